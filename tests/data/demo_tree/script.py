import asyncio

from pkg import Greeter


async def main():
    await asyncio.sleep(0)
    return Greeter.create("world").greet()


class Outer:
    class Inner:
        def run(self):
            return self.helper()

        def helper(self):
            return len(self.__class__.__name__)


asyncio.run(main())

import os.path


def outer(paths):
    def inner(path):
        return os.path.join("root", path)

    return [inner(p) for p in sorted(paths)]


def make_adder(n=int("1")):
    return lambda x: max(x, n)


def chained():
    make_adder(1)(2)
    handlers = [print]
    handlers[0]("x")
    return open("f").read().splitlines()


if __name__ == "__main__":
    print(outer(["a"]))

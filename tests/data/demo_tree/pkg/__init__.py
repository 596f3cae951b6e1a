"""A package with a class whose methods call each other through self and cls."""
import functools
import logging

log = logging.getLogger(__name__)


class Greeter:
    registry = dict()

    def __init__(self, name):
        self.name = name.strip()

    def greet(self):
        message = self.format(self.name)
        print(message)
        return message

    @classmethod
    def create(cls, name):
        return cls.validate(name) and cls(name)

    @staticmethod
    def validate(name):
        return bool(name)

    @functools.lru_cache(maxsize=None)
    def format(self, name):
        return "hello {}".format(name)

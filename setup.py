"""Copies the top-level templates/ into the built package, so an installed rnngen finds them."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithTemplates(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "rnngen" / "templates"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(__file__).resolve().parent / "templates", target)


setup(cmdclass={"build_py": BuildWithTemplates})

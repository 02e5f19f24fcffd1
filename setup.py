"""Package layout: the top-level folders install under the one name ``rlkit``.

``rlkit/`` is the core; ``envs/``, ``algorithms/``, ``kernels/`` and ``configs/`` sit beside it in the
repository (the project's layout) and install as ``rlkit.envs``, ``rlkit.algorithms``, ``rlkit.kernels``
and ``rlkit.configs`` through setuptools' ``package_dir`` mapping. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

#: installed package name -> repository folder
MAPPED = {"rlkit.envs": "envs", "rlkit.algorithms": "algorithms", "rlkit.kernels": "kernels",
          "rlkit.configs": "configs"}

packages = find_namespace_packages(include=["rlkit", "rlkit.*"], exclude=["*__pycache__*"])
package_dir = {"rlkit": "rlkit"}
for name, folder in MAPPED.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]

setup(packages=packages, package_dir=package_dir)

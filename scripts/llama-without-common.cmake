# Included right after llama.cpp's own project() call (scripts/install-llama passes it as
# CMAKE_PROJECT_llama.cpp_INCLUDE). llama-cpp-python forces llama.cpp's `common` library on, but
# its Python package never loads it, and it is most of the build: turned off again here, before
# llama.cpp reads the option.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)

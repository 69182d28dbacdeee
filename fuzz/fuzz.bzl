"""libFuzzer targets built with clang, beside the gcc build (see docs/validation.md, fuzz/build.sh)."""

def dfs_fuzzer(name, srcs, libs = ""):
    """A genrule that compiles srcs (C files and every header they include, generated protobuf-c
    files included) with clang -fsanitize=fuzzer,address,undefined into the executable
    `<name>_fuzzer`. Bazel caches it like any action: it runs again only when a source changes, and
    the gcc toolchain's configuration and cache are not involved at all."""
    native.genrule(
        name = name,
        srcs = srcs,
        outs = [name + "_fuzzer"],
        cmd = "$(location //fuzz:build.sh) $@ $(GENDIR) '%s' $(SRCS)" % libs,
        tools = ["//fuzz:build.sh"],
        executable = True,
        message = "Building libFuzzer target %s with clang" % name,
    )

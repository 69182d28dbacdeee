"""Turn a file into a C source defining `NAME[]` (NUL-terminated) and `NAME_len`: embed.py IN OUT NAME."""
import sys


def main():
    src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
    data = open(src, "rb").read()
    with open(dst, "w") as out:
        out.write("/* Generated from %s by gateway/embed.py: do not edit. */\n" % src)
        out.write("#include <stddef.h>\n\n")
        out.write("const char %s[] = {\n" % name)
        for i in range(0, len(data), 16):
            out.write("    " + " ".join("%d," % b for b in data[i:i + 16]) + "\n")
        out.write("    0,\n};\n")
        out.write("const size_t %s_len = %d;\n" % (name, len(data)))


if __name__ == "__main__":
    main()

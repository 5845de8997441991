#!/usr/bin/env python3
"""Writes docs/src/configuration.md from the `Raw*` structs of config/src:
every key troupe.toml accepts, with its doc comment. scripts/build-docs.sh
checks that the chapter matches the code (it fails when they differ)."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "config" / "src"

HEAD = """# Configuration

`troupe.toml` comes from `--config`, else `$TROUPE_CONFIG`, else the
platform config dir (`~/.config/troupe/troupe.toml`). Every key can also be
set by `TROUPE_<SECTION>__<KEY>` (e.g. `TROUPE_INFERENCE__THREADS=4`). An
unknown key or a bad value is an error naming the key and the file or
variable; every key is optional.

This chapter is written from the code (`scripts/config-reference.py` reads
the `Raw*` structs of `config/src/`, whose fields are exactly the keys the
loader accepts); `scripts/build-docs.sh` fails when it is out of date. The
defaults and the checks of each value are in the section's module
(`config/src/<section>.rs`), whose top comment shows a filled-in example.
"""


def structs():
    """name -> [(field, type, doc)] for every `pub struct Raw*`."""
    found = {}
    for path in sorted(SRC.glob("*.rs")):
        text = path.read_text()
        for m in re.finditer(r"pub struct (Raw\w+) \{\n(.*?)\n\}", text, re.S):
            fields, doc = [], []
            for line in m.group(2).split("\n"):
                line = line.strip()
                if line.startswith("///"):
                    doc.append(line[3:].strip())
                elif line.startswith("#["):
                    continue
                else:
                    f = re.match(r"pub (\w+): (.+),$", line)
                    if f:
                        fields.append((f.group(1), f.group(2), " ".join(doc)))
                    doc = []
            found[m.group(1)] = fields
    return found


def raw_name(ty):
    m = re.search(r"(Raw\w+)", ty)
    return m.group(1) if m else None


def walk(all_structs, name, prefix, array, out):
    fields = all_structs[name]
    scalars = [(f, t, d) for f, t, d in fields if not raw_name(t)]
    nested = [(f, t, d) for f, t, d in fields if raw_name(t)]
    if prefix and scalars:
        out.append(f"\n## `{'[[' + prefix + ']]' if array else '[' + prefix + ']'}`\n")
        out.append("| key | type | what |\n|---|---|---|")
        for f, t, d in scalars:
            t = re.sub(r"^Option<(.*)>$", r"\1", t)
            t = t.replace("|", "\\|")
            out.append(f"| `{f}` | `{t}` | {d} |")
    elif not prefix:
        out.append("\n## Top level\n")
        out.append("| key | type | what |\n|---|---|---|")
        for f, t, d in scalars:
            t = re.sub(r"^Option<(.*)>$", r"\1", t)
            out.append(f"| `{f}` | `{t}` | {d} |")
    for f, t, d in nested:
        child = raw_name(t)
        is_array = t.startswith("Vec<") or t.startswith("Option<Vec<")
        key = f"{prefix}.{f}" if prefix else f
        if "BTreeMap<" in t:
            key += ".NAME"  # a table per name, e.g. [learner.prices."gpt-4o"]
        walk(all_structs, child, key, is_array, out)


def render():
    out = [HEAD.rstrip()]
    walk(structs(), "RawConfig", "", False, out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    text = render()
    target = ROOT / "docs" / "src" / "configuration.md"
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        if target.read_text() != text:
            sys.exit("docs/src/configuration.md is out of date with config/src: "
                     "run `python3 scripts/config-reference.py`")
    else:
        target.write_text(text)

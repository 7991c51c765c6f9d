#!/usr/bin/env python3
"""The layering check: every component includes only what its CMake target may use.

Reads what each target is made of and what it links (BUILD/layers.json, written by
cmake/Targets.cmake at the end of configuration) and scans every `#include "..."` of every file
under src/ and include/wsa/. The target owning a file is, in this order: the one listing it in
its sources; for a header include/wsa/C/x.h or src/C/x.h, the one compiling src/C/x.cc; the one
whose recorded include directory holds it (third-party code: lwIP); the libraries with sources
in src/C (programs only where no library has any). Generated headers (wsa/agent/v1/*.pb.h,
wsa/version.h) belong to the target that records them. Where several libraries share src/C and
nothing above says which owns a header, it belongs to the one all the others may use (their
base: src/agent/api.h -> wsa_agent_lib, src/wg/messages.h -> wsa_wg); with no such base the
header is reported as ambiguous.

Errors (FILE:LINE: error: [rule] message):
  [deps]      a file of L includes a header of M, and L may not use M: M is not one of L's deps
              nor reachable from one through PUBLIC deps (CMake passes a dep's PUBLIC deps on,
              never its PRIVATE ones)
  [private]   a file outside src/C includes "C/x.h", a private header of component C
  [public]    a public header (include/wsa/...) of L includes a header of M that L has only
              through a PRIVATE dep: code including the header does not get M
  [forbidden] a fixed rule (FORBIDDEN below): the shared components include no agent header
  [stale]     a KNOWN_VIOLATIONS entry that no longer occurs
  [owner] [resolve]  a file no target owns, a header owned ambiguously, an include not found

  scripts/check_layers.py [--layers build/debug/layers.json] [--root DIR] [--verbose]
  scripts/check_layers.py --suggest     which deps of each library could be PRIVATE
Exit status 1 on any error, 2 without layers.json.
"""

import argparse
import json
import os
import re
import sys

# Fixed rules: (name, files it applies to, includes they must not have, why).
FORBIDDEN = [
    ("agent-free",
     re.compile(r"^(src|include/wsa)/(ssh|term|rpty|wg|netstack|net|http|common)/"),
     re.compile(r"^(agent/|wsa/agent/(?!v\d+/))"),
     "the shared components must not depend on the agent (agent/..., wsa/agent/...; the "
     "protocol's wsa/agent/vN/ headers are fine)"),
]

# Known violations of FORBIDDEN rules, (file, include): reported as expected, not as errors.
# An entry that no longer occurs is an error, so the list only shrinks.
# TODO(lead): empty this list after merging the branch that moves exec/env out of the agent
# (src/exec); from then on every violation fails the test.
KNOWN_VIOLATIONS = [
    ("include/wsa/term/child.h", "wsa/agent/exec.h"),
    ("include/wsa/ssh/ssh_server.h", "wsa/agent/env.h"),
    ("include/wsa/ssh/ssh_server.h", "wsa/agent/exec.h"),
]

SCANNED_DIRS = ("src", "include/wsa")
SOURCE_EXTS = (".cc", ".cpp", ".c")
SCANNED_EXTS = SOURCE_EXTS + (".h", ".hh", ".hpp", ".inc")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SYSTEM_INCLUDE_RE = re.compile(r"^\s*#\s*include\s*<([^>]+)>")

# For --suggest only: which external target an angle-bracket include comes from.
EXTERNAL_INCLUDES = [
    (re.compile(r"^asio(/|\.hpp$)"), "asio"),
    (re.compile(r"^grpcpp?/"), "grpc"),
    (re.compile(r"^google/protobuf/"), "protobuf"),
    (re.compile(r"^(spdlog|fmt)/"), "spdlog"),
    (re.compile(r"^nlohmann/"), "json"),
    (re.compile(r"^prometheus/"), "prometheus"),
    (re.compile(r"^openssl/"), "openssl"),
    (re.compile(r"^sodium(/|\.h$)"), "sodium"),
    (re.compile(r"^libssh/"), "libssh"),
    (re.compile(r"^vterm(_keycodes)?\.h$"), "vterm"),
    (re.compile(r"^sqlite3\.h$"), "sqlite"),
    (re.compile(r"^CLI/"), "cli11"),
    (re.compile(r"^curl/"), "curl"),
]
EXTERNAL_TARGETS = {
    "wsa_asio": "asio", "gRPC::grpc++": "grpc", "protobuf::libprotobuf": "protobuf",
    "spdlog::spdlog": "spdlog", "fmt::fmt": "spdlog", "nlohmann_json::nlohmann_json": "json",
    "prometheus-cpp::core": "prometheus", "OpenSSL::Crypto": "openssl", "OpenSSL::SSL": "openssl",
    "PkgConfig::SODIUM": "sodium", "PkgConfig::LIBSSH": "libssh", "PkgConfig::VTERM": "vterm",
    "SQLite::SQLite3": "sqlite", "CLI11::CLI11": "cli11", "CURL::libcurl": "curl",
}


class Target:
    def __init__(self, name, data, rel):
        self.name = name
        self.kind = data.get("kind") or "library"
        self.sources = {rel(p) for p in data.get("sources", [])}
        self.public = list(dict.fromkeys(data.get("public_deps", [])))
        self.private = list(dict.fromkeys(data.get("private_deps", [])))
        self.headers = set(data.get("headers", []))
        self.include_dirs = [rel(p) for p in data.get("include_dirs", [])]


class Layers:
    """The targets, who may use whom, and who owns which file."""

    def __init__(self, data, root):
        self.root = os.path.abspath(root)
        self.targets = {n: Target(n, d, self.rel) for n, d in data["targets"].items()}
        self.generated = {}  # "wsa/version.h" -> target
        for t in self.targets.values():
            for h in t.headers:
                self.generated[h] = t.name
        self._pub = {}
        self._allowed = {}

    def rel(self, path):
        """A path relative to the root when inside it (posix), else absolute."""
        full = os.path.normpath(os.path.join(self.root, path))
        r = os.path.relpath(full, self.root)
        return full if r.startswith("..") else r.replace(os.sep, "/")

    def ours(self, deps):
        return [d for d in deps if d in self.targets]

    def public_closure(self, name):
        """name and everything reachable from it through PUBLIC deps."""
        if name not in self._pub:
            self._pub[name] = {name}  # guards cycles
            out = {name}
            for d in self.ours(self.targets[name].public):
                out |= self.public_closure(d)
            self._pub[name] = out
        return self._pub[name]

    def allowed(self, name):
        """What a file of target `name` may include: itself, its deps (PUBLIC and PRIVATE) and
        what they bring through their PUBLIC deps."""
        if name not in self._allowed:
            t = self.targets[name]
            out = {name}
            for d in self.ours(t.public + t.private):
                out |= self.public_closure(d)
            self._allowed[name] = out
        return self._allowed[name]

    def path_of(self, name, dep):
        """A chain of deps from target name to dep, for messages ("a -> b (PRIVATE) -> c")."""
        seen = {name}
        queue = [(name, name)]
        while queue:
            cur, chain = queue.pop(0)
            t = self.targets[cur]
            for d, how in [(d, "") for d in self.ours(t.public)] + \
                          [(d, " (PRIVATE)") for d in self.ours(t.private)]:
                if d in seen:
                    continue
                seen.add(d)
                nxt = f"{chain} -> {d}{how}"
                if d == dep:
                    return nxt
                queue.append((d, nxt))
        return None

    def owners(self, path):
        """(candidate targets, how they were found) for a file (root-relative path)."""
        hits = {n for n, t in self.targets.items() if path in t.sources}
        if hits:
            return hits, "its sources"
        stem, ext = os.path.splitext(path)
        parts = path.split("/")
        if ext not in SOURCE_EXTS:
            if parts[:2] == ["include", "wsa"] and len(parts) > 3:
                src_stem = "/".join(["src"] + parts[2:])[: -len(ext) or None]
            else:
                src_stem = stem
            for e in SOURCE_EXTS:
                hits |= {n for n, t in self.targets.items() if src_stem + e in t.sources}
            if hits:
                return hits, f"{src_stem}.cc"
        for n, t in self.targets.items():
            for d in t.include_dirs:
                if path.startswith(d.rstrip("/") + "/"):
                    hits.add(n)
        if hits:
            return hits, "its include directory"
        if ext in SOURCE_EXTS:
            return set(), "no target compiles it"
        comp = component_of(path)
        if comp is None:
            return set(), "not in a component directory"
        prefix = f"src/{comp}/"
        in_dir = {n for n, t in self.targets.items()
                  if any(s.startswith(prefix) for s in t.sources)}
        libs = {n for n in in_dir if self.targets[n].kind != "executable"}
        return (libs or in_dir), f"directory {prefix}"

    def base_of(self, candidates):
        """The one candidate every other candidate may use, or None."""
        bases = [c for c in candidates
                 if all(c in self.allowed(o) for o in candidates if o != c)]
        return bases[0] if len(bases) == 1 else None


def component_of(path):
    """"agent" for src/agent/... and include/wsa/agent/..., else None."""
    parts = path.split("/")
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[:2] == ["include", "wsa"] and len(parts) > 3:
        return parts[2]
    return None


def scan_files(root):
    out = []
    for d in SCANNED_DIRS:
        top = os.path.join(root, d)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith(SCANNED_EXTS):
                    full = os.path.join(dirpath, f)
                    out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return out


def includes_of(root, path, pattern=INCLUDE_RE):
    """[(line number, included name)] of the file."""
    out = []
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            m = pattern.match(line)
            if m:
                out.append((no, m.group(1)))
    return out


class Checker:
    def __init__(self, layers, known=()):
        self.layers = layers
        self.root = layers.root
        self.known = list(known)
        self.errors = []       # (path, line, rule, message)
        self.expected = []     # (path, line, include)
        self.attributed = {}   # header -> (base, candidates, how): shared directories
        self._owner = {}

    def error(self, path, line, rule, msg):
        self.errors.append((path, line, rule, msg))

    def owner(self, path):
        """The target owning a file, or None (after reporting why)."""
        if path in self._owner:
            return self._owner[path]
        cands, how = self.layers.owners(path)
        result = None
        if not cands:
            self.error(path, 1, "owner",
                       f"no target owns {path} ({how}): add it to a target in CMake "
                       f"(wsa_library/wsa_executable) or remove it")
        elif len(cands) == 1:
            result = next(iter(cands))
        else:
            base = self.layers.base_of(cands)
            names = ", ".join(sorted(cands))
            if base is None:
                self.error(path, 1, "owner",
                           f"ambiguous owner: {path} is claimed by {names} (via {how}) and none "
                           f"of them is usable by all the others; give it a source file in one "
                           f"of them, list it in that target's SOURCES, or move it")
            else:
                result = base
                self.attributed[path] = (base, names, how)
        self._owner[path] = result
        return result

    def resolve(self, includer, name):
        """(path of the included file or None, its owning target or None, found)."""
        cands = [os.path.join(os.path.dirname(includer), name),
                 os.path.join("include", name), os.path.join("src", name)]
        for c in cands:
            p = self.layers.rel(c)
            if os.path.isfile(os.path.join(self.root, p)):
                return p, None, True
        if name in self.layers.generated:
            return None, self.layers.generated[name], True
        for n, t in self.layers.targets.items():
            for d in t.include_dirs:
                p = self.layers.rel(os.path.join(d, name))
                if os.path.isfile(os.path.join(self.root, p)):
                    return p, n, True
        return None, None, False

    def check_file(self, path):
        lib = self.owner(path)
        public_header = path.startswith("include/") and not path.endswith(SOURCE_EXTS)
        for line, name in includes_of(self.root, path):
            for rule, files, incs, why in FORBIDDEN:
                if files.search(path) and incs.search(name):
                    if (path, name) in self.known:
                        self.expected.append((path, line, name))
                    else:
                        self.error(path, line, "forbidden",
                                   f'includes "{name}": {why} (rule {rule})')
            inc_path, inc_lib, found = self.resolve(path, name)
            if not found:
                self.error(path, line, "resolve",
                           f'"{name}" is not in include/, src/, beside the file, among the '
                           f"generated headers or in a recorded include directory")
                continue
            in_include_dir = inc_lib is not None
            if inc_lib is None and inc_path is not None:
                inc_lib = self.owner(inc_path)
            if inc_path is not None and not in_include_dir:
                inc_comp = component_of(inc_path)
                if inc_path.startswith("src/") and inc_comp and comp_dir(path) != inc_comp:
                    self.error(path, line, "private",
                               f'includes "{name}", a private header of component {inc_comp} '
                               f"(src/{inc_comp}/, library {inc_lib}): only files in "
                               f"src/{inc_comp}/ may include it; move it to "
                               f"include/wsa/{inc_comp}/ if other components need it")
            if lib is None or inc_lib is None or inc_lib == lib:
                continue
            if inc_lib not in self.layers.allowed(lib):
                self.error(path, line, "deps",
                           f'includes "{name}" of {inc_lib}, but {lib} may not use {inc_lib}: '
                           f"it is not one of {lib}'s deps nor reachable from them through "
                           f"PUBLIC deps; add {inc_lib} to {lib}'s deps in CMake or drop "
                           f"the include")
            elif public_header and inc_lib not in self.layers.public_closure(lib):
                chain = self.layers.path_of(lib, inc_lib)
                self.error(path, line, "public",
                           f'public header of {lib} includes "{name}" of {inc_lib}, which {lib} '
                           f"has only through a PRIVATE dep ({chain}): code that includes "
                           f"{path} does not get {inc_lib}; make that dep PUBLIC or keep the "
                           f"include out of the public header")

    def run(self, files):
        for f in files:
            self.check_file(f)
        seen = {(p, n) for p, _, n in self.expected}
        for p, n in self.known:
            if (p, n) not in seen:
                self.error(p, 1, "stale",
                           f'KNOWN_VIOLATIONS lists ({p}, "{n}"), which no longer occurs: '
                           f"remove it from scripts/check_layers.py")


def comp_dir(path):
    """The component of a file for the private-header rule: C for files in src/C/ only."""
    parts = path.split("/")
    return parts[1] if parts[0] == "src" and len(parts) > 2 else None


def suggest(layers, checker, files, out):
    """For each library: which of its PUBLIC deps no public header needs (could be PRIVATE)."""
    needs = {}  # lib -> {target or external family: (header, include)}
    for path in files:
        if not path.startswith("include/") or path.endswith(SOURCE_EXTS):
            continue
        lib = checker.owner(path)
        if lib is None:
            continue
        need = needs.setdefault(lib, {})
        for _, name in includes_of(layers.root, path):
            inc_path, inc_lib, found = checker.resolve(path, name)
            if found and inc_lib is None and inc_path is not None:
                inc_lib = checker.owner(inc_path)
            if inc_lib and inc_lib != lib:
                need.setdefault(inc_lib, (path, name))
        for _, name in includes_of(layers.root, path, SYSTEM_INCLUDE_RE):
            for pattern, family in EXTERNAL_INCLUDES:
                if pattern.search(name):
                    need.setdefault("<" + family + ">", (path, f"<{name}>"))

    def families(dep, seen=None):
        """External families a dep provides through PUBLIC deps."""
        seen = set() if seen is None else seen
        if dep in seen:
            return set()
        seen.add(dep)
        if dep not in layers.targets:
            fam = EXTERNAL_TARGETS.get(dep)
            return {fam} if fam else set()
        out = set()
        for d in layers.targets[dep].public:
            out |= families(d, seen)
        return out

    def provides(dep):
        """What a PUBLIC dep brings to code including the library's public headers: our targets
        (its PUBLIC closure) and external families ("<grpc>")."""
        if dep in layers.targets:
            return layers.public_closure(dep) | {"<" + f + ">" for f in families(dep)}
        fam = EXTERNAL_TARGETS.get(dep)
        return {"<" + fam + ">"} if fam else set()

    def direct_key(dep):
        if dep in layers.targets:
            return dep
        fam = EXTERNAL_TARGETS.get(dep)
        return "<" + fam + ">" if fam else None

    out.write("# Per library: the PUBLIC deps its public headers (include/wsa/...) need, and\n"
              "# those they do not (could be PRIVATE). After turning a dep PRIVATE run the check\n"
              "# again: code that used it through the library must then list it itself.\n")
    for name in sorted(layers.targets):
        t = layers.targets[name]
        if t.kind != "library" or not t.public:
            continue
        need = needs.get(name, {})
        keep = {}  # dep -> why
        # A need met by a direct dep keeps only that one; else every dep that brings it (one of
        # them is enough). Reasons from direct needs first.
        direct_keys = {direct_key(d) for d in t.public}
        for key, (hdr, inc) in sorted(need.items(), key=lambda kv: (kv[0] not in direct_keys,
                                                                      kv[0])):
            direct = [d for d in t.public if direct_key(d) == key]
            providers = direct or [d for d in t.public if key in provides(d)]
            for d in providers:
                via = "" if direct else f" ({key} through {d}" + \
                    ("" if len(providers) == 1 else ", or " + ", ".join(
                        p for p in providers if p != d)) + ")"
                keep.setdefault(d, f"{hdr}: {inc}{via}")
        out.write(f"{name}:\n")
        for dep in t.public:
            if dep in keep:
                out.write(f"  keep PUBLIC       {dep:30} {keep[dep]}\n")
        for dep in t.public:
            if dep not in keep and (dep in layers.targets or dep in EXTERNAL_TARGETS):
                out.write(f"  could be PRIVATE  {dep}\n")
        for dep in t.public:
            if dep not in keep and not (dep in layers.targets or dep in EXTERNAL_TARGETS):
                out.write(f"  unknown           {dep:30} not ours, not in EXTERNAL_TARGETS: check "
                          f"by hand (a link-only library can be PRIVATE)\n")
        if t.private:
            out.write(f"  (PRIVATE already: {', '.join(t.private)})\n")


def main(argv=None, known=None, out=sys.stdout):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default=os.path.join(here, "..", "build", "debug", "layers.json"),
                    help="layers.json from CMake (default: build/debug/layers.json)")
    ap.add_argument("--root", help="the source tree (default: source_dir in layers.json)")
    ap.add_argument("--suggest", action="store_true",
                    help="print, per library, which deps could be PRIVATE")
    ap.add_argument("--verbose", action="store_true",
                    help="also list headers attributed to the base library of a shared directory")
    args = ap.parse_args(argv)
    try:
        with open(args.layers, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        out.write(f"check_layers: cannot read {args.layers}: {e.strerror}; configure with CMake "
                  f"first (cmake -S . -B build/debug -G Ninja)\n")
        return 2
    root = args.root or data["source_dir"]
    layers = Layers(data, root)
    checker = Checker(layers, KNOWN_VIOLATIONS if known is None else known)
    files = scan_files(layers.root)
    if args.suggest:
        suggest(layers, checker, files, out)
        return 0
    checker.run(files)
    for path, line, name in checker.expected:
        out.write(f"{path}:{line}: note: expected violation (KNOWN_VIOLATIONS, to be fixed): "
                  f'includes "{name}"\n')
    if checker.attributed:
        if args.verbose:
            for path, (base, names, how) in sorted(checker.attributed.items()):
                out.write(f"{path}: note: claimed by {names} (via {how}); attributed to {base}, "
                          f"the one the others may use\n")
        else:
            out.write(f"check_layers: {len(checker.attributed)} header(s) in shared directories "
                      f"attributed to their base library (--verbose lists them)\n")
    for path, line, rule, msg in sorted(checker.errors):
        out.write(f"{path}:{line}: error: [{rule}] {msg}\n")
    n = len(checker.errors)
    out.write(f"check_layers: {len(files)} files, {n} error(s), "
              f"{len(checker.expected)} expected violation(s)\n")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())

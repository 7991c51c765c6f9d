#!/usr/bin/env python3
"""Tests of scripts/check_layers.py on small fake trees, and of the record cmake/Targets.cmake
writes (a tiny CMake project using it). Run by ctest (check_layers_test, label unit)."""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import check_layers  # noqa: E402


def lib(sources, public=(), private=(), kind="library", headers=(), include_dirs=()):
    return {"kind": kind, "sources": list(sources), "public_deps": list(public),
            "private_deps": list(private), "headers": list(headers),
            "include_dirs": list(include_dirs)}


# A clean tree: base <- mid (PUBLIC base, PRIVATE hidden) <- top; a proto library with a
# generated header; a directory (src/wg) shared by two libraries; third-party headers in a
# recorded include directory; a program.
CLEAN_TARGETS = {
    "base": lib(["src/base/a.cc"], public=["spdlog::spdlog"]),
    "hidden": lib(["src/hidden/h.cc"]),
    "proto": lib(["build/gen/p.pb.cc"], kind="proto", headers=["wsa/p/v1/p.pb.h"]),
    "mid": lib(["src/mid/m.cc"], public=["base", "proto", "Threads::Threads"],
               private=["hidden", "gRPC::grpc++"]),
    "top": lib(["src/top/t.cc"], public=["mid"]),
    "wg": lib(["src/wg/core.cc"], public=["base"]),
    "wg_io": lib(["src/wg/io.cc"], public=["wg"]),
    "third": lib([], kind="third_party", include_dirs=["third/include"]),
    "netstack": lib(["src/netstack/n.cc"], public=["base"], private=["third"]),
    "prog": lib(["src/prog/main.cc"], kind="executable", private=["top"]),
}
CLEAN_FILES = {
    "include/wsa/base/a.h": "#pragma once\n#include <spdlog/logger.h>\n",
    "src/base/a.cc": '#include "wsa/base/a.h"\n#include "base/detail.h"\n',
    "src/base/detail.h": "#pragma once\n",
    "include/wsa/hidden/h.h": "#pragma once\n",
    "src/hidden/h.cc": '#include "wsa/hidden/h.h"\n',
    "include/wsa/mid/m.h": '#pragma once\n#include "wsa/base/a.h"\n#include "wsa/p/v1/p.pb.h"\n',
    "src/mid/m.cc": '#include "wsa/mid/m.h"\n#include "wsa/hidden/h.h"\n#include "mid/impl.h"\n',
    "src/mid/impl.h": '#pragma once\n#include "wsa/hidden/h.h"\n',
    # top reaches base through mid's PUBLIC dep
    "src/top/t.cc": '#include "wsa/mid/m.h"\n#include "wsa/base/a.h"\n',
    "src/wg/messages.h": "#pragma once\n",  # no messages.cc: shared by wg and wg_io -> wg
    "src/wg/core.cc": '#include "wg/messages.h"\n',
    "src/wg/io.cc": '#include "wg/messages.h"\n#include "wsa/base/a.h"\n',
    "third/include/tp/tp.h": "#pragma once\n",
    "src/netstack/n.cc": '#include "tp/tp.h"\n#include "wsa/base/a.h"\n',
    "src/prog/main.cc": '#include "wsa/mid/m.h"\n#include "wsa/base/a.h"\n',
}


class FakeTree:
    def __init__(self, targets, files):
        self.dir = tempfile.mkdtemp(prefix="check_layers_test.")
        for path, text in files.items():
            full = os.path.join(self.dir, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        self.layers = os.path.join(self.dir, "layers.json")
        with open(self.layers, "w") as f:
            json.dump({"source_dir": self.dir, "targets": targets}, f)

    def run(self, *args, known=()):
        out = io.StringIO()
        rc = check_layers.main(["--layers", self.layers, *args], known=list(known), out=out)
        return rc, out.getvalue()

    def remove(self):
        shutil.rmtree(self.dir)


def inc(*names):
    """The text of a file that includes names."""
    return "".join(f'#include "{n}"\n' for n in names)


def errors(output):
    return [line for line in output.splitlines() if ": error: " in line]


class CheckLayersTest(unittest.TestCase):
    def tree(self, extra_files=None, targets=None, drop=()):
        files = dict(CLEAN_FILES)
        files.update(extra_files or {})
        for d in drop:
            del files[d]
        t = FakeTree(targets or CLEAN_TARGETS, files)
        self.addCleanup(t.remove)
        return t

    def assert_one_error(self, output, where, rule, *words):
        errs = errors(output)
        self.assertEqual(len(errs), 1, output)
        self.assertTrue(errs[0].startswith(where + ": error: [" + rule + "]"), errs[0])
        for w in words:
            self.assertIn(w, errs[0])

    def test_clean_tree_passes(self):
        rc, out = self.tree().run()
        self.assertEqual(rc, 0, out)
        self.assertEqual(errors(out), [])
        self.assertIn(f"{len(CLEAN_FILES) - 1} files, 0 error(s)", out)  # third/ is not scanned

    def test_shared_directory_header_goes_to_the_base_library(self):
        rc, out = self.tree().run("--verbose")
        self.assertEqual(rc, 0, out)
        self.assertIn("src/wg/messages.h: note: claimed by wg, wg_io (via directory src/wg/); "
                      "attributed to wg", out)

    def test_include_of_a_library_not_depended_on(self):
        rc, out = self.tree({"src/base/a.cc": inc("wsa/base/a.h", "wsa/mid/m.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/base/a.cc:2", "deps", '"wsa/mid/m.h" of mid',
                              "base may not use mid")

    def test_private_dep_of_a_dep_is_not_usable(self):
        # top -> mid (PUBLIC) -> hidden (PRIVATE): top does not get hidden.
        rc, out = self.tree({"src/top/t.cc": inc("wsa/mid/m.h", "wsa/hidden/h.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/top/t.cc:2", "deps", "of hidden", "top may not use hidden")

    def test_header_owned_through_its_source_file(self):
        # include/wsa/wg/io.h belongs to wg_io (src/wg/io.cc), so wg may not include it.
        rc, out = self.tree({"include/wsa/wg/io.h": "#pragma once\n",
                             "src/wg/core.cc": inc("wg/messages.h", "wsa/wg/io.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/wg/core.cc:2", "deps", "of wg_io", "wg may not use wg_io")

    def test_private_header_of_another_component(self):
        rc, out = self.tree({"src/top/t.cc": inc("wsa/mid/m.h", "base/detail.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/top/t.cc:2", "private",
                              "private header of component base", "library base")

    def test_public_header_including_a_private_header(self):
        rc, out = self.tree({"include/wsa/base/a.h": "#pragma once\n" + inc("base/detail.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "include/wsa/base/a.h:2", "private", "component base")

    def test_public_header_including_a_private_dep(self):
        rc, out = self.tree({"include/wsa/mid/m.h": "#pragma once\n" + inc("wsa/hidden/h.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "include/wsa/mid/m.h:2", "public", "public header of mid",
                              "of hidden", "mid -> hidden (PRIVATE)")

    def test_forbidden_agent_include(self):
        targets = dict(CLEAN_TARGETS)
        targets["agent"] = lib(["src/agent/exec.cc"])
        targets["net"] = lib(["src/net/s.cc"], public=["agent", "proto"])
        files = {"include/wsa/agent/exec.h": "#pragma once\n", "src/agent/exec.cc": "",
                 "src/net/s.cc": '#include "wsa/p/v1/p.pb.h"\n#include "wsa/agent/exec.h"\n'}
        rc, out = self.tree(files, targets).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/net/s.cc:2", "forbidden", '"wsa/agent/exec.h"',
                              "agent-free")
        # the protocol's headers (wsa/agent/v1/) are allowed
        files["src/net/s.cc"] = '#include "wsa/agent/v1/x.pb.h"\n'
        targets["agent_proto"] = lib(["build/gen/x.pb.cc"], kind="proto",
                                     headers=["wsa/agent/v1/x.pb.h"])
        targets["net"] = lib(["src/net/s.cc"], public=["agent_proto"])
        rc, out = self.tree(files, targets).run()
        self.assertEqual(rc, 0, out)

    def test_known_violation_is_expected_and_a_stale_one_fails(self):
        targets = dict(CLEAN_TARGETS)
        targets["agent"] = lib(["src/agent/exec.cc"])
        targets["net"] = lib(["src/net/s.cc"], public=["agent"])
        files = {"include/wsa/agent/exec.h": "#pragma once\n", "src/agent/exec.cc": "",
                 "src/net/s.cc": '#include "wsa/agent/exec.h"\n'}
        tree = self.tree(files, targets)
        rc, out = tree.run(known=[("src/net/s.cc", "wsa/agent/exec.h")])
        self.assertEqual(rc, 0, out)
        self.assertIn('src/net/s.cc:1: note: expected violation', out)
        rc, out = tree.run(known=[("src/net/s.cc", "wsa/agent/exec.h"),
                                  ("src/net/gone.h", "agent/x.h")])
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/net/gone.h:1", "stale", "no longer occurs")

    def test_known_violations_name_files_of_the_tree(self):
        for path, _ in check_layers.KNOWN_VIOLATIONS:
            self.assertTrue(os.path.isfile(os.path.join(ROOT, path)), path)

    def test_ambiguous_owner(self):
        targets = dict(CLEAN_TARGETS)
        targets["wg_other"] = lib(["src/wg/other.cc"], public=["base"])  # neither uses the other
        rc, out = self.tree({"src/wg/other.cc": ""}, targets).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/wg/messages.h:1", "owner", "ambiguous owner",
                              "wg, wg_io, wg_other")

    def test_file_no_target_owns(self):
        rc, out = self.tree({"src/stray/x.cc": ""}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/stray/x.cc:1", "owner", "no target owns src/stray/x.cc")

    def test_unresolved_include(self):
        rc, out = self.tree({"src/mid/m.cc": inc("wsa/mid/m.h", "nowhere.h")}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/mid/m.cc:2", "resolve", '"nowhere.h"')

    def test_third_party_header_needs_the_dep(self):
        rc, out = self.tree({"src/mid/m.cc": '#include "wsa/mid/m.h"\n#include "tp/tp.h"\n'}).run()
        self.assertEqual(rc, 1)
        self.assert_one_error(out, "src/mid/m.cc:2", "deps", "of third", "mid may not use third")

    def test_missing_layers_file(self):
        out = io.StringIO()
        rc = check_layers.main(["--layers", "/nonexistent/layers.json"], known=[], out=out)
        self.assertEqual(rc, 2)
        self.assertIn("cannot read /nonexistent/layers.json", out.getvalue())

    def test_suggest(self):
        rc, out = self.tree().run("--suggest")
        self.assertEqual(rc, 0, out)

        def section(name):
            lines = out.splitlines()
            i = lines.index(name + ":")
            rest = lines[i + 1:]
            n = next((k for k, line in enumerate(rest) if not line.startswith(" ")), len(rest))
            return "\n".join(rest[:n])

        mid = section("mid")
        self.assertRegex(mid, r"keep PUBLIC +base +include/wsa/mid/m.h: wsa/base/a.h")
        self.assertRegex(mid, r"keep PUBLIC +proto +include/wsa/mid/m.h: wsa/p/v1/p.pb.h")
        self.assertRegex(mid, r"unknown +Threads::Threads")
        self.assertNotIn("could be PRIVATE", mid)
        self.assertIn("(PRIVATE already: hidden, gRPC::grpc++)", mid)
        self.assertRegex(section("top"), r"^ +could be PRIVATE +mid$")  # t.cc is no header
        self.assertRegex(section("base"), r"^ +keep PUBLIC +spdlog::spdlog +"
                                          r"include/wsa/base/a.h: <spdlog/logger.h>$")


CMAKE_PROJECT = """\
cmake_minimum_required(VERSION 3.25)
project(fake LANGUAGES CXX)
add_library(wsa_warnings INTERFACE)
add_library(wsa_sanitizers INTERFACE)
add_library(ext INTERFACE)
include({root}/cmake/Targets.cmake)
add_subdirectory(src)
wsa_record_target(third KIND third_party INCLUDE_DIRS third/include)
"""
CMAKE_SRC = """\
wsa_library(a SOURCES a/a.cc DEPS ext)
wsa_library(b SOURCES b/b.cc DEPS a PUBLIC_DEPS ext PRIVATE_DEPS third)
wsa_generated_headers(a wsa/gen.h)
wsa_executable(prog SOURCES prog/main.cc DEPS b PRIVATE_DEPS a)
"""


class TargetsCMakeTest(unittest.TestCase):
    """cmake/Targets.cmake records what wsa_library/wsa_executable were given."""

    def test_layers_json(self):
        d = tempfile.mkdtemp(prefix="check_layers_cmake.")
        self.addCleanup(shutil.rmtree, d)
        files = {"CMakeLists.txt": CMAKE_PROJECT.format(root=ROOT), "src/CMakeLists.txt": CMAKE_SRC,
                 "src/a/a.cc": "", "src/b/b.cc": "", "src/prog/main.cc": "int main() {}\n"}
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as f:
                f.write(text)
        build = os.path.join(d, "build")
        r = subprocess.run(["cmake", "-S", d, "-B", build], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(build, "layers.json")) as f:
            data = json.load(f)
        self.assertEqual(os.path.realpath(data["source_dir"]), os.path.realpath(d))
        t = data["targets"]
        self.assertEqual(sorted(t), ["a", "b", "prog", "third"])
        self.assertEqual(t["a"], lib(["src/a/a.cc"], public=["ext"], headers=["wsa/gen.h"]))
        self.assertEqual(t["b"], lib(["src/b/b.cc"], public=["a", "ext"], private=["third"]))
        self.assertEqual(t["prog"], lib(["src/prog/main.cc"], kind="executable",
                                        private=["b", "a"]))
        self.assertEqual(t["third"], lib([], kind="third_party", include_dirs=["third/include"]))


if __name__ == "__main__":
    unittest.main()

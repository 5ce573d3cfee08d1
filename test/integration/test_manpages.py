"""The man pages cannot drift from the programs unnoticed.

For every page in man/ (ramdiskfs.8 always; ramdiskctl.8 once it exists), the
options that `PROGRAM --help` lists are exactly the options the page's OPTIONS
section has as .TP tags. For ramdiskfs(8) also: the --disk keys and the -o
options of --help against DISK KEYS and MOUNT OPTIONS; the control files a
running daemon really shows (global and per disk) against CONTROL FILES; the
systemd config keys the unit's helper accepts against SYSTEMD; the version.
Each page also has to render without groff warnings.

CONTROL FILES has a group per kind of file (global, per disk, fault injection,
the volatile write cache), and the daemon must serve each in full.
"""

import os
import pathlib
import re
import shlex
import subprocess

import pytest

from support.mounts import BIN, CTL, ROOT, run

MAN_DIR = ROOT / "man"
PAGES = sorted(p.name for p in MAN_DIR.glob("*.8"))
EXPECTED_PAGES = {"ramdiskfs.8", "ramdiskctl.8"}
PROGRAMS = {"ramdiskfs.8": BIN, "ramdiskctl.8": CTL}

# .SS titles in CONTROL FILES for the per-disk files of SPEC 10 and 11.
FEATURE_GROUPS = ("Fault injection", "Volatile write cache and power cuts")

# ---- reading roff --------------------------------------------------------------------

_ALTERNATING = {"BI", "BR", "IB", "IR", "RB", "RI"}


def _plain(text):
    """Roff text to plain text: font escapes out, \\- and friends to characters."""
    text = re.sub(r"\\f[BIRP]|\\f\(\w\w|\\f\[\w*\]", "", text)
    for escaped, plain in (("\\-", "-"), ("\\(dq", '"'), ("\\&", ""), ("\\c", ""),
                           ("\\e", "\\"), ("\\ ", " ")):
        text = text.replace(escaped, plain)
    return text


def _macro_text(line):
    """The text a line prints: '.BI \\-\\-disk " NAME"' -> '--disk NAME'."""
    if not line.startswith("."):
        return _plain(line)
    name, _, rest = line[1:].partition(" ")
    try:
        args = shlex.split(rest.replace("\\", "\\\\"), posix=True)
    except ValueError:
        args = rest.split()
    joiner = "" if name in _ALTERNATING else " "
    return _plain(joiner.join(args))


def parse_page(path):
    """[(section, subsection, tag text)] for every .TP/.IP tag in a man page."""
    tags = []
    section = subsection = ""
    lines = pathlib.Path(path).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith('.\\"'):
            continue
        if line.startswith(".SH"):
            section, subsection = _plain(line[3:].strip().strip('"')), ""
        elif line.startswith(".SS"):
            subsection = _plain(line[3:].strip().strip('"'))
        elif line.startswith(".TP"):
            nxt = next((l for l in lines[i + 1:] if not l.startswith('.\\"')), "")
            tags.append((section, subsection, _macro_text(nxt)))
        elif line.startswith(".IP "):
            tags.append((section, subsection, _macro_text(".B " + line[4:])))
    return tags


_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def options_in(text):
    return set(_OPTION.findall(text))


def page_options(page):
    path = page if isinstance(page, pathlib.Path) else MAN_DIR / page
    return set().union(*(options_in(tag) for sec, _, tag in parse_page(path)
                         if sec == "OPTIONS"))


# ---- reading --help ------------------------------------------------------------------


def help_text(program):
    res = run(program, "--help")
    assert res.returncode == 0
    return res.stdout


def help_options(text):
    """Options of the lines that start (after indentation) with '-': the part before
    the description column (two or more spaces)."""
    found = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            found |= options_in(re.split(r"\s{2,}", stripped)[0])
    return found


def help_disk_keys(text):
    """The keys of the 'key=VALUE' lines between --disk and the next option; a line
    may list several ('errors=, fault_seed=, latency=')."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().startswith("--disk "))
    keys = set()
    for l in lines[start + 1:]:
        if l.strip().startswith("-"):
            break
        if re.match(r"^\s{20,30}[a-z_]+=", l):  # the key column, not a description
            keys |= set(re.findall(r"(?:^\s+|,\s*)([a-z_]+)=", l))
    return keys


def help_mount_options(text):
    """-o's own options: the 'name=' list before 'as above', and allow_other."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().startswith("-o "))
    block = [lines[start]]
    for l in lines[start + 1:]:
        if not l.startswith(" " * 10):
            break
        block.append(l)
    para = " ".join(block)
    own, _, rest = para.partition("as above")
    names = set(re.findall(r"\b([a-z_]+)=", own))
    # Flags after it, each "; NAME (what it does)": allow_other, ro, ...
    names |= set(re.findall(r";\s*([a-z_]+) \(", rest))
    return names


def help_exit_statuses(text):
    """The numbers of an 'Exit status:' paragraph, or None if --help has none."""
    m = re.search(r"^Exit status:(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    return None if m is None else set(re.findall(r"\b(\d+) ", m.group(1)))


# ---- the pages that exist ------------------------------------------------------------


def test_set_of_pages():
    """No stray pages; ramdiskctl.8 comes from the ramdiskctl branch. Once both pages
    are in man/, the set must be exactly EXPECTED_PAGES."""
    pages = set(PAGES)
    if "ramdiskctl.8" in pages:
        assert pages == EXPECTED_PAGES
    else:
        assert pages == {"ramdiskfs.8"}, f"unexpected pages: {sorted(pages)}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page):
    res = run("groff", "-man", "-ww", "-z", MAN_DIR / page, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("page", PAGES)
def test_options_match_help(page):
    program = PROGRAMS[page]
    assert program.exists(), f"{program} is not built"
    listed = help_options(help_text(program))
    documented = page_options(page)
    assert listed, "parsed no options from --help: has its layout changed?"
    assert documented, f"{page}: no options in .SH OPTIONS .TP tags"
    assert listed - documented == set(), f"in --help but not in {page}"
    assert documented - listed == set(), f"in {page} but not in --help"


def test_drift_is_caught(tmp_path):
    """The comparison sees an option dropped from the page, and one added to it."""
    text = (MAN_DIR / "ramdiskfs.8").read_text()
    tag = ".TP\n.BI \\-\\-threads \" N\"\n"
    assert tag in text
    dropped, added = tmp_path / "dropped.8", tmp_path / "added.8"
    dropped.write_text(text.replace(tag, ""))
    added.write_text(text.replace(tag, tag + "x\n.TP\n.B \\-\\-bogus\nx\n"))
    assert page_options("ramdiskfs.8") - page_options(dropped) == {"--threads"}
    assert page_options(added) - page_options("ramdiskfs.8") == {"--bogus"}


@pytest.mark.parametrize("page", PAGES)
def test_version_matches(page):
    program = PROGRAMS[page]
    version = run(program, "--version").stdout.split()[-1]
    th = next(l for l in (MAN_DIR / page).read_text().splitlines() if l.startswith(".TH"))
    assert version in shlex.split(th)[4], f"{page}: .TH says {th!r}, the program {version}"


# ---- ramdiskfs(8) only ---------------------------------------------------------------


def _tags(section, subsection=None):
    return {tag.split()[0] for sec, sub, tag in parse_page(MAN_DIR / "ramdiskfs.8")
            if sec == section and (subsection is None or sub == subsection)}


def test_disk_keys_match_help():
    listed = help_disk_keys(help_text(BIN))
    tags = [tag for sec, _, tag in parse_page(MAN_DIR / "ramdiskfs.8") if sec == "DISK KEYS"]
    documented = set().union(*(re.findall(r"([a-z_]+)=", t) for t in tags))  # a tag may list several
    assert listed >= {"mode", "image", "readonly"}, f"parse of --help found {listed}"
    assert listed == documented


def test_mount_options_match_help():
    listed = help_mount_options(help_text(BIN))
    documented = {t.split("=")[0] for t in _tags("MOUNT OPTIONS")}
    assert "disks" in listed and "allow_other" in listed, f"parse of --help found {listed}"
    assert listed == documented
    # Each -o option but the mount(8) flags allow_other and ro is a long option too.
    longs = {o[2:].replace("-", "_") for o in help_options(help_text(BIN)) if o[:2] == "--"}
    assert listed - {"allow_other", "ro"} <= longs  # mount(8) flags, -o only (supervise is both)


def test_exit_statuses_match_help():
    """EXIT STATUS has a tag per status. On this branch --help states none (so the page
    is the only statement); where --help has an 'Exit status:' paragraph (ramdiskfs on
    main after the mount(8) conventions, ramdiskctl), the sets must be equal."""
    documented = _tags("EXIT STATUS")
    assert {"0", "1"} <= documented, documented
    listed = help_exit_statuses(help_text(BIN))
    if listed is not None:
        assert listed == documented, f"--help says {sorted(listed)}"


def _control_groups():
    groups = {}
    for sec, sub, tag in parse_page(MAN_DIR / "ramdiskfs.8"):
        if sec == "CONTROL FILES":
            groups.setdefault(sub, set()).add(tag.split()[0])
    return groups


def test_control_files_match_daemon(mount_factory):
    """The files of a real mount (direct mode, where every per-disk file applies)."""
    mnt = mount_factory("--disk", "ram0:1M:mode=direct", wait_disks=["ram0"])
    daemon_global = {e.name for e in os.scandir(mnt.control) if e.is_file()}
    daemon_disk = {e.name for e in os.scandir(mnt.ctl("ram0")) if e.is_file()}
    groups = _control_groups()
    assert set(groups) == {"Global files", "Per-disk files", *FEATURE_GROUPS}
    assert daemon_global == groups["Global files"]
    documented_disk = set().union(*(v for k, v in groups.items() if k != "Global files"))
    assert daemon_disk - documented_disk == set(), "served but not in ramdiskfs(8)"
    assert documented_disk - daemon_disk == set(), "in ramdiskfs(8) but not served"


def test_systemd_config_keys_match_helper():
    """The keys of SYSTEMD are the case labels of the helper's config parser."""
    helper = (ROOT / "systemd" / "ramdiskfs-service.in").read_text()
    body = helper[helper.index('case $key in'):helper.index('esac')]
    accepted = set()
    for label in re.findall(r"^\s*([a-z_ |]+)\)", body, re.M):
        accepted |= {w.strip() for w in label.split("|")}
    documented = set()
    for sec, _, tag in parse_page(MAN_DIR / "ramdiskfs.8"):
        if sec == "SYSTEMD":
            documented |= {w for w in re.split(r"[ ,=]+", tag) if re.fullmatch(r"[a-z_]+", w)}
    documented -= {"yes", "no"}
    assert accepted >= {"mountpoint", "disk", "persist"}, accepted
    assert accepted == documented


# ---- bash completion -----------------------------------------------------------------


def _complete(script, *words):
    """What bash completion offers for the command line `words` (the last is the
    word being completed)."""
    line = " ".join(shlex.quote(w) for w in words)
    prog = f"""
source /usr/share/bash-completion/bash_completion
source {shlex.quote(str(script))}
COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}
COMP_LINE={shlex.quote(" ".join(words))}; COMP_POINT=${{#COMP_LINE}}
_ramdiskfs ramdiskfs "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    res = run("bash", "-c", prog)
    return set(res.stdout.split())


def test_completion_matches_help():
    script = ROOT / "completion" / "ramdiskfs"
    if not os.path.exists("/usr/share/bash-completion/bash_completion"):
        pytest.fail("bash-completion is not installed (it is on Debian by default)")
    text = help_text(BIN)
    assert _complete(script, "ramdiskfs", "-") == help_options(text)
    assert _complete(script, "ramdiskfs", "/mnt", "-o", "") == \
        {o + "=" if o not in ("allow_other", "ro", "supervise") else o for o in help_mount_options(text)}
    assert _complete(script, "ramdiskfs", "/mnt", "-o", "disks=2,ma") == {"disks=2,max_memory="}
    assert _complete(script, "ramdiskfs", "/mnt", "--mode", "d") == {"dax", "direct"}

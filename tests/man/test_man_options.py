#!/usr/bin/env python3
"""man.options: what the code accepts against what the manual pages say.

  - agent.conf keys: the names in agent/config.c's key table, against the
    entries of the KEYS section of man/ramkey-agent.conf.5;
  - ramkey-agent: the long and short options of agent/main.c's getopt
    table, against the SYNOPSIS and OPTIONS of man/ramkey-agent.8;
  - ramkey-agent-client: the options of client/main.c's getopt tables and
    its commands, against the SYNOPSIS, OPTIONS and COMMANDS of
    man/ramkey-agent-client.1;
  - pam_ramkey.so: the module options pam_module/pam_ramkey.c parses,
    against the OPTIONS of man/pam_ramkey.8.

Both ways: everything in the code is documented, and every key, long
option, command and module option a page documents exists in the code.
The sources are read as text (the tables are plain C initialisers); the
pages as troff with the font and escape sequences taken out.
"""

import os
import re
import sys

SOURCE_DIR = os.environ.get(
    "RAMKEY_SOURCE_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def src(*parts):
    with open(os.path.join(SOURCE_DIR, *parts)) as f:
        return f.read()


def block(text, start, end="};"):
    i = text.index(start)
    return text[i:text.index(end, i)]


# ---- the code ----

def config_keys():
    table = block(src("agent", "config.c"), "key_names[K_COUNT] = {")
    return re.findall(r'\[K_[A-Z0-9_]+\]\s*=\s*"([a-z0-9_]+)"', table)


def getopt_tables(text):
    """Long options of every `struct option` table, and the short option
    letters of every getopt_long() call."""
    longs, shorts = [], []
    for m in re.finditer(r"static const struct option \w+\[\] = \{(.*?)\n\t\};",
                         text, re.S):
        longs += re.findall(r'\{\s*"([a-z][a-z0-9-]*)",', m.group(1))
    for m in re.finditer(r'getopt_long\(argc, argv, "([^"]*)"', text):
        shorts += [c for c in m.group(1) if c.isalnum()]
    if not longs or not shorts:
        raise AssertionError("no getopt table found")
    return sorted(set(longs)), sorted(set(shorts))


def client_commands():
    text = src("client", "main.c")
    return sorted(set(re.findall(r'strcmp\(command, "([a-z-]+)"\)', text)))


def pam_options():
    body = block(src("pam_module", "pam_ramkey.c"),
                 "static void parse_options(", "\n}\n")
    opts = re.findall(r'skip_prefix\(a, "([a-z_]+=)"\)', body)
    opts += re.findall(r'strcmp\(a, "([a-z_]+)"\) == 0', body)
    if len(opts) < 5:
        raise AssertionError("pam_ramkey.c: cannot find the module options")
    return sorted(set(opts))


# ---- the pages ----

def page(name):
    return src("man", name).split("\n")


def plain(line):
    """A troff line as the words a reader sees: macro name, font changes,
    escapes and quotes taken out."""
    line = re.sub(r"^\.[A-Z]{1,2}\b ?", "", line)
    line = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", line)
    line = line.replace("\\-", "-").replace("\\&", "").replace("\\%", "")
    line = line.replace("\\:", "").replace("\\(em", " ").replace('"', " ")
    return line


def sections(lines):
    out, name = {}, None
    for ln in lines:
        if ln.startswith(".SH "):
            name = ln[4:].strip().strip('"')
            out[name] = []
        elif name is not None:
            out[name].append(ln)
    return out


def text_of(lines):
    return "\n".join(plain(ln) for ln in lines if not ln.startswith(".\\\""))


def has_token(text, tok):
    return re.search(r"(?<![A-Za-z0-9_-])" + re.escape(tok) +
                     r"(?![A-Za-z0-9_-])", text) is not None


def entry_heads(lines):
    """The first line of each .TP entry (its head), as plain text."""
    return [plain(lines[i + 1]) for i, ln in enumerate(lines)
            if ln.strip() == ".TP" and i + 1 < len(lines)]


def conf_page_keys():
    """Keys named in the heads of the KEYS entries, up to the default in
    parentheses."""
    keys = []
    for head in entry_heads(sections(page("ramkey-agent.conf.5"))["KEYS"]):
        head = head.split("(")[0]
        keys += re.findall(r"[a-z][a-z0-9_]*", head)
    return keys


# ---- checks ----

def compare(what, code, documented, problems, reverse=True):
    missing = [x for x in code if x not in documented]
    if missing:
        problems.append("%s not documented: %s" % (what, ", ".join(missing)))
    if reverse:
        stale = sorted(set(x for x in documented if x not in code))
        if stale:
            problems.append("%s documented but not in the code: %s"
                            % (what, ", ".join(stale)))


def main():
    problems = []

    keys = config_keys()
    compare("agent.conf keys (ramkey-agent.conf(5) KEYS)", keys,
            conf_page_keys(), problems)

    longs, shorts = getopt_tables(src("agent", "main.c"))
    s = sections(page("ramkey-agent.8"))
    text = text_of(s["SYNOPSIS"] + s["OPTIONS"])
    compare("ramkey-agent options (ramkey-agent(8) OPTIONS)",
            ["--" + o for o in longs] + ["-" + c for c in shorts],
            [t for t in ("--" + o for o in longs) if has_token(text, t)] +
            [t for t in ("-" + c for c in shorts) if has_token(text, t)] +
            re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text_of(s["OPTIONS"])),
            problems)

    clongs, cshorts = getopt_tables(src("client", "main.c"))
    commands = client_commands()
    s = sections(page("ramkey-agent-client.1"))
    text = text_of(s["SYNOPSIS"] + s["OPTIONS"] + s["COMMANDS"])
    compare("ramkey-agent-client options (ramkey-agent-client(1))",
            ["--" + o for o in clongs] + ["-" + c for c in cshorts],
            [t for t in ("--" + o for o in clongs) if has_token(text, t)] +
            [t for t in ("-" + c for c in cshorts) if has_token(text, t)] +
            re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)",
                       text_of(s["OPTIONS"] + s["COMMANDS"])),
            problems)
    heads = [h.split()[0] for h in entry_heads(s["COMMANDS"]) if h.split()]
    compare("ramkey-agent-client commands (ramkey-agent-client(1) COMMANDS)",
            commands, heads, problems)

    popts = pam_options()
    s = sections(page("pam_ramkey.8"))
    text = text_of(s["OPTIONS"])
    documented = [o for o in popts if has_token(text, o)]
    for head in entry_heads(s["OPTIONS"]):
        documented += re.findall(r"(?<![\w-])([a-z_]+=)", head)
        documented += [w for w in re.findall(r"^[a-z_]+$", head.strip())]
    compare("pam_ramkey.so options (pam_ramkey(8) OPTIONS)", popts, documented,
            problems)

    print("%d agent.conf keys, %d + %d ramkey-agent options, %d + %d "
          "ramkey-agent-client options and %d commands, %d pam_ramkey options"
          % (len(keys), len(longs), len(shorts), len(clongs), len(cshorts),
             len(commands), len(popts)))
    if problems:
        for p in problems:
            print("FAIL: %s" % p)
        sys.exit(1)
    print("every key, option and command is in its manual page, and the "
          "pages document nothing the code lacks")


if __name__ == "__main__":
    main()

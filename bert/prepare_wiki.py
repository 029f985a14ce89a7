"""bert-prepare-wiki: a Wikipedia XML dump -> pre-training text, one sentence a line.

    bert-prepare-wiki --input_file=enwiki-latest-pages-articles.xml.bz2 --output_dir=wiki_text

Output: shards OUTPUT_DIR/wiki_00000.txt, wiki_00001.txt, ... of about --shard_size_mb each, in the
input format of bert-create-data: one sentence a line, a blank line after every article, the last of a
shard too (the reference's reader, and bert-create-data's reference mode, carry a document on into the
next file until a blank line ends it). Articles keep the dump's order, and the text
does not depend on --num_workers. The summary line counts as "articles in" the articles wikiextractor
extracted (main-namespace pages that are no redirects) and as "written" those left with text.

Two stages:

1. wikiextractor (its command line, run as a subprocess with --processes) strips the wiki markup,
   tables, lists, redirects and pages outside the main namespace into JSON files in a temporary
   directory inside --output_dir (it is about as big as the output). We stream the dump into its
   stdin rather than naming the file, to fix up four things it gets wrong with wikiextractor 3.1.0
   (checked on Python 3.11, which it otherwise runs on without trouble):
   - It keeps the newlines inside a paragraph wrapped over several lines of wikitext, which MediaWiki
     joins, and ends paragraphs with a single newline too, so that a sentence came out cut at every
     line of its source; such lines are joined on the way in.
   - It keeps every section heading as an ordinary line ("History.") with nothing to tell it from a
     one-sentence paragraph and no option to leave headings out, so heading lines are removed from
     the wikitext on the way in, where they are unambiguous; so are lines that are all bold, the
     informal headings over lists ('''Notes''').
   - It reads namespaces and the template prefix from <siteinfo>; a dump without one (a hand-made
     export) makes it read the whole input looking for it and extract nothing, with exit status 0.
     Such a dump gets a <siteinfo> with MediaWiki's canonical namespace names.
   - It takes anything as a dump (a text file yields zero articles and exit status 0), so the start
     of the input is checked for the <mediawiki> root element first.
   Its `-` for stdin opens a file named "-", hence /dev/stdin; its template pass needs a second read
   of the dump, which the pipe cannot give, hence --templates naming the dump itself. On the way in,
   code, verse, music and timeline blocks (<syntaxhighlight>, <source>, <pre>, <poem>, <score>,
   <timeline>), and lines starting with a space (preformatted, most often code), whose lines it keeps
   as text, are removed, the dump going through in blocks of whole pages, and a dump holding several
   revisions of a page (a history dump), whose texts it would run together, is refused. It runs in a
   process group of its own, which an interrupt, a SIGTERM or a SIGHUP to this command ends whole, and
   ends with this command however it ends.

2. Worker processes (--num_workers) each take one of wikiextractor's files and, per article, undo its
   HTML escaping (&amp;, &lt;), drop paragraphs that still hold markup ([[, ]], {{, }}, <ref, {|, |},
   HTML tags) or are list items it let through (indented "* ..."), split the paragraphs into
   sentences, drop a paragraph's last sentence where it ends in a colon and no text follows (what it
   introduced, a list, table, formula or code, is gone), normalise whitespace, and drop sentences
   shorter than 2 characters or that are just what wikiextractor leaves of a formula or code block
   ("formula_3"). Articles left with no text (or less than --min_article_chars) are dropped. The
   parent writes the articles into the shards in order, each shard through bert.fileio.AtomicFile.

Sentence splitter: blingfire, not pysbd. On the 106 articles of the enwiki sample (7061 paragraphs,
2.6 MB) blingfire took 0.40 s (6.6 MB/s) and pysbd 29.5 s (0.09 MB/s): 75 times slower, days of CPU
for the whole English Wikipedia against about an hour. Inside a sentence both handle "e.g.", "i.e.",
"U.S.", "Dr. Smith", "St. Louis", "3.5", "J. R. R. Tolkien" and "Washington, D.C."; pysbd splits after
"c." and "approx." ("built c. | 1200"). blingfire's mistakes are of two kinds, both repaired here: a
title or initial that opens a sentence is split off on its own ("Dr. | Jones returned", "H. | N. |
Abrams"), and a quoted "!" or "?" ends the sentence ('"Stop!" | and left'), or a citation's page
does ("Stein 2005, p. | 79"), or in Chinese and Japanese the end of a quotation or aside ("「本当？ |
」と彼は言った。"). So a fragment that is nothing but capitalised abbreviations or a list number ("Dr.",
"H. N.", "2.") is joined to the next one, and a fragment that starts with a lower-case letter or with a
number after "p." or "pp." to the previous one (with no space where the text had none). A fragment's
closing quotation marks or brackets that the previous one left open go back to it, the rest with them
unless the quotation ended in a full stop ("“我们会赢。” | 她回答说") and no Japanese quoting particle
follows ("「行こう。」と言った"). In a dump whose language
(the xml:lang of its root element) writes ordinals with a full stop (German "im 13. Jahrhundert", "am
3. Oktober"; ORDINAL_DOT_LANGUAGES), a fragment ending in a number from 1 to 31 and a full stop is
joined to the next one too: blingfire ends a sentence there.
"""

import bz2
import contextlib
import functools
import glob
import gzip
import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import blingfire
from absl import flags

from bert import cli, fileio, progress
from bert.errors import InputError

FLAGS = flags.FLAGS

SHARD_PATTERN = "wiki_*.txt"

# Enough to hold the <mediawiki> tag, a <siteinfo> and the start of the first page.
_HEAD_CHARS = 1 << 20
_BLOCK_CHARS = 1 << 20
_PAGE_END = "</page>"
# Far above MediaWiki's limit on a page's size ($wgMaxArticleSize, 2 MiB by default).
_MAX_PAGE_CHARS = 64 << 20

# A line of wikitext that is a heading, or all bold: articles use '''Notes''' or '''[[Maryland]]''' as
# a heading over a list. It may be the first or last line of a <text> element and be followed by
# comments (still XML-escaped here): the tags around it are kept, the heading itself goes.
_HEADING = re.compile(
    r"^([ \t]*<text[^>\n]*>)?(?:=[^\n]*=|'''(?:(?!''')[^\n])+''')[ \t]*(?:&lt;!--[^\n]*?--&gt;[ \t]*)*(</text>)?$",
    re.MULTILINE,
)

# Canonical names are valid on every language's wiki; wikiextractor uses them to tell links to
# categories, files and templates from links to articles.
_CANONICAL_NAMESPACES = (
    (-2, "Media"), (-1, "Special"), (1, "Talk"), (2, "User"), (3, "User talk"), (4, "Project"),
    (5, "Project talk"), (6, "File"), (7, "File talk"), (8, "MediaWiki"), (9, "MediaWiki talk"),
    (10, "Template"), (11, "Template talk"), (12, "Help"), (13, "Help talk"), (14, "Category"),
    (15, "Category talk"), (828, "Module"), (829, "Module talk"),
)
# One element a line: wikiextractor reads <siteinfo> line by line, one tag per line.
_SITEINFO = "".join(
    ["  <siteinfo>\n", "    <namespaces>\n", '      <namespace key="0" />\n']
    + [f'      <namespace key="{key}">{name}</namespace>\n' for key, name in _CANONICAL_NAMESPACES]
    + ["    </namespaces>\n", "  </siteinfo>\n"]
)

_MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|<ref|\{\||\|\}|<!--|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_ABBREVIATIONS_ONLY = re.compile(r"(?:[A-Z][a-z]{0,3}|\d{1,3})\.(?: [A-Z][a-z]{0,3}\.)*")
# A page abbreviation, which a number follows in a citation ("Stein 2005, p. 79"), where blingfire ends a sentence.
_PAGE_ABBREVIATION_END = re.compile(r"(?:^|[\s(\[])pp?\.$")
# Quotation marks and brackets: the opening ones a closing one closes. blingfire ends a sentence inside a quotation
# or an aside in Chinese and Japanese ('「本当？' | '」と彼は言った。'), whose closing mark then opens the next
# fragment. Only one that closes what the fragment before left open counts: Swedish opens a quotation with ”,
# German closes one with “ (it opens with „), French uses « » either way round.
_CLOSES = {"”": "“„", "’": "‘‚", "“": "„", "‘": "‚", "»": "«", "«": "»", "」": "「", "』": "『", "）": "（", ")": "(",
           "】": "【", "》": "《", "〉": "〈", "]": "["}
_OPENS = frozenset("“„‘‚«»「『（(【《〈[")
# What may follow a closing mark in the sentence it closes ("」。").
_SENTENCE_PUNCTUATION = frozenset("。．.，,、！？!?；;：:")
# Where the quotation ends in one, the rest of the fragment is a sentence of its own (“我们会赢。” | 她回答说：…),
# unless it goes on with Japanese's quoting particle (「行こう。」と言った。).
_FULL_STOPS = ("。", "．", ".")
_QUOTING_PARTICLES = ("と", "って")
# What wikiextractor leaves of a <math> or <code> block: alone on a line, it says nothing.
_PLACEHOLDER_ONLY = re.compile(r"(?:formula|codice)_\d+\W*")
# A fragment that ends in a number from 1 to 31 with a full stop: in these languages most often an ordinal (a day,
# a month, a century, a place), as in German "im 13. Jahrhundert" or "am 3. Oktober", where blingfire ends a
# sentence. A sentence that does end in such a number is joined to the next: the rarer mistake.
_ORDINAL_END = re.compile(r"(?:^|\s)(?:[1-9]|[12]\d|3[01])\.$")
ORDINAL_DOT_LANGUAGES = frozenset(
    "de als gsw bar ksh lb nds pfl da nb nn no is fo fi et lv cs sk sl hr sr sh bs hu tr hsb dsb".split()
)
# The dump's language, on its root element.
_DUMP_LANGUAGE = re.compile(r"<mediawiki\b[^>]*\bxml:lang=\"([^\"]+)\"")
# Code, verse, music and timelines (XML-escaped here): wikiextractor keeps the lines of a block as text. A block
# ends inside its page's <text>: an unclosed <pre> (MediaWiki accepts one) must not reach into the next page.
_VERBATIM_BLOCK = re.compile(
    r"&lt;(syntaxhighlight|source|pre|poem|score|timeline)\b(?:(?!&gt;).)*?&gt;(?:(?!</text>).)*?&lt;/\1\s*&gt;",
    re.DOTALL | re.IGNORECASE,
)


def define_flags():
    flags.DEFINE_string(
        "input_file",
        None,
        "A Wikipedia XML dump (pages-articles), .xml, .xml.bz2 or .xml.gz, as published on dumps.wikimedia.org.",
    )
    flags.DEFINE_string(
        "output_dir",
        None,
        "Directory for the shards wiki_00000.txt, ...: one sentence a line, a blank line after "
        "each article (the last one in a shard too). Created if missing.",
    )
    flags.DEFINE_integer(
        "num_workers",
        os.cpu_count() or 1,
        "Processes for wikiextractor (its --processes) and for sentence splitting.",
        lower_bound=1,
    )
    flags.DEFINE_integer(
        "shard_size_mb",
        64,
        "A shard is closed once it holds this many MiB of text; shards end at article boundaries.",
        lower_bound=1,
    )
    flags.DEFINE_integer(
        "min_article_chars",
        0,
        "Drop articles whose sentences add up to fewer characters than this (0: keep every article "
        "with text).",
        lower_bound=0,
    )
    flags.DEFINE_bool(
        "overwrite", False, "Replace the wiki_*.txt shards already in --output_dir instead of refusing. They "
        "are replaced once the new corpus is whole: the disk needs room for both until then."
    )


_CLOSING_TAG = "</mediawiki>"
# Enough of the dump's end to find its closing tag behind trailing whitespace.
_TAIL_CHARS = len(_CLOSING_TAG) + 64


def _open_dump(path):
    """(raw binary file, decoded text stream); the raw file's position measures progress."""
    raw = open(path, "rb")
    stream = bz2.BZ2File(raw) if path.endswith(".bz2") else gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
    return raw, io.TextIOWrapper(stream, encoding="utf-8")


def _read(text, size, path):
    try:
        return text.read(size)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"--input_file: cannot read {path} as a MediaWiki XML dump: {e}") from None


def _whole_pages(head, text, path):
    """Yields `head`, then the rest of the dump, in blocks that end after a page (the cleanup's patterns span
    lines of a page: a code block, a wrapped paragraph); a block without one, longer than any page MediaWiki
    saves, ends at a line end."""
    rest = head
    while True:
        block = _read(text, _BLOCK_CHARS, path)
        if not block:
            break
        block = rest + block
        page_end = block.rfind(_PAGE_END)
        cut = block.find("\n", page_end) + 1 if page_end >= 0 else 0
        if not cut and len(block) > _MAX_PAGE_CHARS:
            cut = block.rfind("\n") + 1
        if cut:
            rest = block[cut:]
            yield block[:cut]
        else:
            rest = block
    if rest:
        yield rest


def _read_head(text, path):
    head = _read(text, _HEAD_CHARS, path)
    if "<mediawiki" not in head:
        raise InputError(f"--input_file: not a MediaWiki XML dump (no <mediawiki> element): {path}")
    first_page = head.find("<page>")
    if first_page >= 0 and "<siteinfo>" not in head[:first_page]:
        line_start = head.rfind("\n", 0, first_page) + 1
        head = head[:line_start] + _SITEINFO + head[line_start:]
    return head


def _run_wikiextractor(path, text_dir, log_path, num_workers, raw, text, head):
    """Feeds the dump, headings removed, to wikiextractor; raises InputError if it fails. Returns whether
    the dump ended with its closing </mediawiki> tag (not, when cut short)."""
    tail = ""
    command = [
        sys.executable, "-m", "wikiextractor.WikiExtractor", "/dev/stdin", "--templates", path,
        "--json", "--processes", str(num_workers), "--quiet", "-o", text_dir,
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        # A group of its own: its --processes workers are its children, and an interrupt, a SIGTERM or bad input
        # seen here ends them all (see _end_group), before their output directory is removed.
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, encoding="utf-8",
            start_new_session=True, preexec_fn=fileio.end_with_parent,
        )
        finished = threading.Event()
        watcher = threading.Thread(target=_show_template_pass, args=(process.pid, path, finished), daemon=True)
        watcher.start()
        bar = progress.bar(total=os.path.getsize(path), unit="B", unit_scale=True, desc="wikiextractor")
        revisions = _RevisionCheck(path)
        try:
            try:
                for block in _whole_pages(head, text, path):
                    revisions.check(block)
                    # Not tail + block: a copy of every block of the dump, to keep its last few characters.
                    tail = (tail + block[-_TAIL_CHARS:])[-_TAIL_CHARS:]
                    process.stdin.write(_prepared_wikitext(block))
                    bar.update(raw.tell() - bar.n)
            except BrokenPipeError:
                pass  # It stopped reading: its own message, read below, says why.
            finally:
                bar.close()
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
            status = process.wait()
        except BaseException:
            _end_group(process)
            raise
        finally:
            finished.set()
            watcher.join()
    if status != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            lines = [line.strip() for line in log if line.strip()]
        reason = lines[-1] if lines else f"exit status {status}"
        raise InputError(f"--input_file: wikiextractor failed on {path}: {reason}")
    return tail.rstrip().endswith(_CLOSING_TAG)


def _end_group(process, timeout=30):
    """Kills `process` and every process of its group (it leads one of its own), and waits until they are gone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.getpid() == 1:
            # A container's first process (docker run without --init) inherits the orphaned workers: a zombie
            # stays in the group until its parent reaps it.
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


class _RevisionCheck:
    """Refuses a dump holding several revisions of a page (a pages-meta-history dump): wikiextractor would run
    their texts together into one article."""

    _TAG = re.compile(r"^[ \t]*<(page|revision)>", re.MULTILINE)

    def __init__(self, path):
        self.path = path
        self.revisions = 0

    def check(self, block):
        for match in self._TAG.finditer(block):
            if match.group(1) == "page":
                self.revisions = 0
                continue
            self.revisions += 1
            if self.revisions > 1:
                raise InputError(f"--input_file: {self.path} holds several revisions of a page (a history dump?); "
                                 f"use a pages-articles dump, which holds the latest revision of each page")


def _show_template_pass(pid, path, finished):
    """Shows wikiextractor's first pass, its own read of the whole dump for templates, which it makes before
    it reads the text we feed it (hours for a full English dump); ends when the pass or `finished` does.
    Shows nothing where the pass cannot be seen (no Linux /proc) or passes unseen (a small dump)."""
    if not os.path.isdir("/proc/self/fdinfo"):
        return
    bar = None
    while not finished.wait(0.5):
        position = read_position(pid, path)
        if position is None and bar is not None:
            bar.update(bar.total - bar.n)
            break
        if position is not None:
            if bar is None:
                bar = progress.bar(total=os.path.getsize(path), unit="B", unit_scale=True, desc="templates",
                                   leave=False)
            bar.update(position - bar.n)
    if bar is not None:
        bar.close()


def read_position(pid, path):
    """How far process `pid` has read into the file at `path` (from Linux's /proc), or None where it does not
    have it open."""
    target = os.path.realpath(path)
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") != target:
                continue
            with open(f"/proc/{pid}/fdinfo/{descriptor}", encoding="ascii") as info:
                return next(int(line.split()[1]) for line in info if line.startswith("pos:"))
        except (OSError, StopIteration, ValueError):
            continue
    return None


# A line of running text (the first of a <text> element too) followed by another: MediaWiki joins them into
# one paragraph, but wikiextractor keeps the newline, indistinguishable afterwards from a paragraph break. Not
# running text: blank lines, lines starting with a space (preformatted), list, table, template or markup
# characters, a tag (XML-escaped here: "<" is "&lt;") but those inside a sentence (a formula, a reference, a
# superscript...), or "-" (a rule, ----). A quotation mark or an ampersand is text ("&quot;", "&amp;").
_INLINE_TAG = r"&lt;/?(?:math|chem|ce|ref|sup|sub|span|small|big|nowiki|abbr|code|var|b|i|u|s)\b"
_TEXT_START = rf"(?:[^\s*#:;{{}}|!=&<\-]|&(?!lt;)|{_INLINE_TAG})"
_WRAPPED_LINE = re.compile(rf"^((?:[ \t]*<text[^>\n]*>)?{_TEXT_START}[^\n]*)\n(?={_TEXT_START})", re.MULTILINE)


# A line of a <text> element (its first too) starting with a space: MediaWiki shows it as preformatted text, most
# often code, which wikiextractor keeps as text. Other lines of the dump start with a space too, its XML's
# indentation, and hold tags ("<"), which no line of a <text> element holds but its closing tag. Inside a
# <blockquote> (to its end, or the page's) such a line is text: the quotation is matched whole, and kept.
_PREFORMATTED_LINE = re.compile(
    r"(?P<quotation>(?s:&lt;blockquote\b.*?(?:&lt;/blockquote\s*&gt;|(?=</text>))))"
    r"|^(?P<open>[ \t]*<text[^>\n]*>)? (?![^\n]*&lt;blockquote\b)(?=[^\n]*\S)(?P<line>[^<\n]*)(?P<close></text>)?$",
    re.MULTILINE,
)
# What may open or close something over several lines (a template, link, table, tag or comment): a line holding
# such a part of it stays, lest the lines that follow it or come before it become text.
_SPANNING_MARKUP = re.compile(r"\{\||\|\}|&lt;/?[A-Za-z][A-Za-z0-9]*(?:\s|/?&gt;)|&lt;!--|--&gt;")


def _without_preformatted_line(match):
    line = match.group("line")
    if (line is None or _SPANNING_MARKUP.search(line) or line.count("{{") != line.count("}}")
            or line.count("[[") != line.count("]]")):
        return match.group(0)
    # Blank, not gone: the text on either side of a preformatted block is two paragraphs, not one.
    return (match.group("open") or "") + (match.group("close") or "")


def _prepared_wikitext(block):
    """A block of the dump with its headings, preformatted lines and verbatim blocks removed and its wrapped
    paragraphs joined (see _HEADING, _PREFORMATTED_LINE, _VERBATIM_BLOCK and _WRAPPED_LINE)."""
    # Preformatted lines first: a verbatim block opening a line leaves the space that stands for it.
    block = _PREFORMATTED_LINE.sub(_without_preformatted_line, block)
    block = _VERBATIM_BLOCK.sub(" ", block)
    return _WRAPPED_LINE.sub(r"\1 ", _HEADING.sub(_keep_text_tags, block))


def _keep_text_tags(match):
    return (match.group(1) or "") + (match.group(2) or "")


def _sentences(paragraph, ordinal_dots=False):
    """blingfire's sentences of a paragraph, with its kinds of false split undone (see top); `ordinal_dots`: in a
    language that writes ordinals with a full stop, also after a number."""
    text = " ".join(paragraph.split())
    out = []
    end = 0
    for sentence in blingfire.text_to_sentences(paragraph).split("\n"):
        sentence = " ".join(sentence.split())
        if not sentence:
            continue
        # Joined as they stood: with no space where there was none (Chinese, Japanese).
        start = text.find(sentence, end)
        separator = "" if start == end and end else " "
        end = start + len(sentence) if start >= 0 else end
        closing = _closing_marks(out[-1], sentence) if out else 0
        if closing:
            rest = sentence[closing:]
            if not (rest.strip() and out[-1].endswith(_FULL_STOPS) and not rest.lstrip().startswith(_QUOTING_PARTICLES)):
                out[-1] = f"{out[-1]}{separator}{sentence}"
                continue
            # The marks end the sentence before; the rest is a fragment of its own.
            out[-1] = f"{out[-1]}{separator}{sentence[:closing]}"
            sentence, separator = rest.lstrip(), " " if rest[0] == " " else ""
        if out and (sentence[0].islower() or _ABBREVIATIONS_ONLY.fullmatch(out[-1])
                    or (sentence[0].isdigit() and _PAGE_ABBREVIATION_END.search(out[-1]))
                    or (ordinal_dots and _ORDINAL_END.search(out[-1]))):
            out[-1] = f"{out[-1]}{separator}{sentence}"
        else:
            out.append(sentence)
    return [s for s in out if len(s) >= 2 and not _PLACEHOLDER_ONLY.fullmatch(s)]


def _closing_marks(before, fragment):
    """How many of `fragment`'s first characters close quotations or brackets `before` left open, with the
    punctuation right after them; 0 where its first does not."""
    # Most fragments start with no closing mark at all: `before` is left unread for them.
    if fragment[0] not in _CLOSES:
        return 0
    open_marks = []
    for c in before:
        if open_marks and open_marks[-1] in _CLOSES.get(c, ""):
            open_marks.pop()
        elif c in _OPENS:
            open_marks.append(c)
    count = 0
    while count < len(fragment) and open_marks and open_marks[-1] in _CLOSES.get(fragment[count], ""):
        open_marks.pop()
        count += 1
    while count and count < len(fragment) and fragment[count] in _SENTENCE_PUNCTUATION:
        count += 1
    return count


def _article_sentences(text, ordinal_dots=False):
    """wikiextractor's text of one article -> its sentences, residual markup and list items dropped."""
    paragraphs = [paragraph.strip() for paragraph in html.unescape(text).split("\n") if paragraph.strip()]
    kept = [[] if paragraph[0] in "*#;" or _MARKUP.search(paragraph) else _sentences(paragraph, ordinal_dots)
            for paragraph in paragraphs]
    # From the end, each paragraph's next one as it is left: a colon that follows a colon goes too.
    following = []
    for index in reversed(range(len(kept))):
        # The list, table or formula a sentence ending in a colon introduced is gone, as is all of a
        # disambiguation page but its "Ada may refer to:". One that a paragraph of text follows stays: that
        # may be the quotation it introduced.
        if kept[index] and kept[index][-1].endswith(":") and not following:
            kept[index] = kept[index][:-1]
        following = kept[index]
    return [sentence for own in kept for sentence in own]


def _split_file(path, min_article_chars, ordinal_dots):
    """One wikiextractor output file -> (articles in it, [(text, sentences, UTF-8 bytes)] kept)."""
    count = 0
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            count += 1
            sentences = _article_sentences(json.loads(line)["text"], ordinal_dots)
            if sentences and sum(map(len, sentences)) >= min_article_chars:
                text = "\n".join(sentences) + "\n"
                kept.append((text, len(sentences), len(text.encode("utf-8"))))
    return count, kept


STAGED_SUFFIX = ".staged"
WORK_DIR_PREFIX = ".wikiextractor-"


class _Shards:
    """Writes articles into numbered shards, staged under hidden names until the whole corpus is written.

    Only `commit()` puts them in place, replacing the shards there before: a run that fails or is killed
    leaves the corpus that was there as it was, and never a part of a corpus that looks whole.
    """

    def __init__(self, output_dir, shard_bytes, replaced):
        self.output_dir = output_dir
        self.shard_bytes = shard_bytes
        self.replaced = replaced
        self.paths = []
        self.current = None
        self.size = 0
        # What a killed run left: its staged shards and wikiextractor's output, as large as the corpus.
        for path in glob.glob(os.path.join(glob.escape(output_dir), ".*" + SHARD_PATTERN + STAGED_SUFFIX + "*")):
            os.unlink(path)
        for path in glob.glob(os.path.join(glob.escape(output_dir), WORK_DIR_PREFIX + "*")):
            shutil.rmtree(path, ignore_errors=True)

    def _staged(self, path):
        return os.path.join(self.output_dir, "." + os.path.basename(path) + STAGED_SUFFIX)

    def write(self, text, size):
        if self.current is None:
            self.paths.append(os.path.join(self.output_dir, f"wiki_{len(self.paths):05d}.txt"))
            self.current = fileio.AtomicFile(self._staged(self.paths[-1]), "w")
            self.size = 0
        self.current.write(text + "\n")
        self.size += size + 1
        if self.size >= self.shard_bytes:
            self.current.commit()
            self.current = None

    def commit(self):
        if self.current is not None:
            self.current.commit()
            self.current = None
        with cli.signals_deferred("the shards"):
            for path in self.paths:
                os.replace(self._staged(path), path)
            # Old shards beside new ones would read as one corpus.
            for path in set(self.replaced) - set(self.paths):
                os.unlink(path)

    def abort(self):
        """Leaves no shard of this run behind, so a failed run is never mistaken for a whole corpus."""
        if self.current is not None:
            self.current.abort()
            self.paths.pop()
        for path in self.paths:
            try:
                os.unlink(self._staged(path))
            except FileNotFoundError:
                pass
        self.paths = []


def _check_output_dir(output_dir, input_path):
    """The shards there now (to replace with --overwrite); raises InputError if it cannot be used."""
    if not os.path.exists(output_dir):
        return []
    if not os.path.isdir(output_dir):
        raise InputError(f"--output_dir: not a directory: {output_dir}")
    fileio.check_writable_dir(output_dir, "--output_dir")
    existing = sorted(glob.glob(os.path.join(glob.escape(output_dir), SHARD_PATTERN)))
    if existing and not FLAGS.overwrite:
        raise InputError(
            f"--output_dir: {output_dir} already holds {len(existing)} {SHARD_PATTERN} file(s); "
            "pass --overwrite to replace them"
        )
    for shard in existing:
        if os.path.samefile(shard, input_path):
            raise InputError(f"--input_file: {input_path} is one of the {SHARD_PATTERN} files of --output_dir, which "
                             f"--overwrite replaces; move it or use another --output_dir")
    return existing


def main(argv):
    del argv
    start = time.perf_counter()
    input_files = fileio.expand_inputs(FLAGS.input_file)
    if len(input_files) > 1:
        raise InputError(f"--input_file: give one dump, not {len(input_files)} files")
    path = input_files[0]
    output_dir = FLAGS.output_dir

    raw, text = _open_dump(path)
    with raw, text, fileio.sigterm_interrupts():
        head = _read_head(text, path)
        existing = _check_output_dir(output_dir, path)
        fileio.make_output_dir(output_dir, "--output_dir")
        # Another run on the same directory would sweep up this one's staged shards as a killed run's.
        fileio.lock_directory(output_dir, "--output_dir", holder="bert-prepare-wiki run")
        shards = _Shards(output_dir, FLAGS.shard_size_mb << 20, existing)
        try:
            with tempfile.TemporaryDirectory(prefix=WORK_DIR_PREFIX, dir=output_dir) as work_dir:
                text_dir = os.path.join(work_dir, "text")
                whole = _run_wikiextractor(
                    path, text_dir, os.path.join(work_dir, "wikiextractor.log"), FLAGS.num_workers, raw, text, head
                )
                if not whole:
                    cli.rank_log()(f"warning: --input_file: {path} ends before its closing {_CLOSING_TAG} tag: cut short "
                                   f"(an interrupted download?), it yields only the pages before the cut")
                articles_in, articles, sentences = _write_shards(text_dir, shards, _language(head) in ORDINAL_DOT_LANGUAGES)
            if not articles:
                raise InputError(f"--input_file: no article with text in {path}")
            shards.commit()
        except BaseException:
            shards.abort()
            raise

    print(
        f"bert-prepare-wiki: {articles_in} articles in, {articles} articles written, {sentences} sentences, "
        f"{len(shards.paths)} shard(s) in {output_dir}, {time.perf_counter() - start:.1f}s"
    )


def _language(head):
    """The language of the dump whose start is `head` ("de" for dewiki; "sr" for "sr-ec"), or None where it names
    none."""
    match = _DUMP_LANGUAGE.search(head)
    return match.group(1).lower().split("-")[0] if match else None


def _write_shards(text_dir, shards, ordinal_dots):
    """Splits wikiextractor's files in parallel, writes them in order: (articles in, written, sentences)."""
    files = sorted(glob.glob(os.path.join(glob.escape(text_dir), "*", "wiki_*")))
    articles_in = articles = sentences = 0
    split = functools.partial(_split_file, min_article_chars=FLAGS.min_article_chars, ordinal_dots=ordinal_dots)
    bar = progress.bar(total=len(files), unit="file", desc="sentences")
    with bar, fileio.worker_pool(FLAGS.num_workers, os.getpid()) as pool:
        for _, (count, kept) in fileio.ordered_results(pool, split, ((path,) for path in files), 2 * FLAGS.num_workers):
            articles_in += count
            for article, num_sentences, size in kept:
                shards.write(article, size)
                articles += 1
                sentences += num_sentences
            bar.update(1)
            bar.set_postfix(articles=articles, refresh=False)
    return articles_in, articles, sentences


def run():
    define_flags()
    cli.run_command(main, required=("input_file", "output_dir"))


if __name__ == "__main__":
    run()

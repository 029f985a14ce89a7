"""bert-prepare-wiki on real Wikipedia dumps: articles kept, markup gone, sane sentences, bad input."""

import bz2
import fcntl
import gzip
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, assert_clean_failure, message_lines, run_cli, shared_file, unavailable, wait_for

WIKI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki"
ENWIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = "enwiki-table-markup.xml.bz2"
VIWIKI = "viwiki_sample/test.xml"

# Lines of wikitext that are no prose: lists, headings, templates, tables, tags, images, categories.
NOT_PROSE = ("*", "#", ":", ";", "=", "{", "}", "|", "!", "<", "__", "[[File:", "[[Category:", "[[Thể loại:")
# Its wikitext is headings, {{Div col}} templates, one image and list items: nothing for wikiextractor
# to keep (its JSON text is empty).
ENWIKI_EMPTY = {"List of anthropologists"}
# Disambiguation pages: all their text but the line before the list ("Ada may refer to:").
ENWIKI_DISAMBIGUATION = {"Alien", "Ada"}
# The Vietnamese main page: a layout of <div>s and templates.
VIWIKI_EMPTY = {"Trang Chính"}
RESIDUE = ("[[", "]]", "{{", "}}", "<ref", "|}", "{|")


def dump(name):
    path = WIKI / name
    if not path.exists():
        unavailable(f"real data not available: {path} (tests read it from ../shared/data)")
    return path


def articles_in_dump(path):
    """(title, wikitext) of each main-namespace page that is no redirect, parsed with ElementTree."""
    out = []
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as f:
        try:
            for _, element in ET.iterparse(f):
                if not element.tag.endswith("}page"):
                    continue
                text = element.findtext("{*}revision/{*}text") or ""
                redirect = element.find("{*}redirect") is not None or text.lstrip().upper().startswith("#REDIRECT")
                if element.findtext("{*}ns") == "0" and not redirect:
                    out.append((element.findtext("{*}title"), text))
                element.clear()
        except ET.ParseError:
            # The viwiki sample is cut off before </mediawiki>; its pages all came before.
            pass
    return out


def without_prose(articles):
    return {
        title
        for title, text in articles
        if not any(line.strip() and not line.strip().startswith(NOT_PROSE) for line in text.split("\n"))
    }


def prepare(input_path, output_dir, *flags):
    result = run_cli("prepare_wiki", f"--input_file={input_path}", f"--output_dir={output_dir}", *flags)
    assert result.returncode == 0, result.stderr
    return result


def shards(output_dir):
    return sorted(Path(output_dir).glob("wiki_*.txt"))


def read_articles(output_dir):
    """The articles of all shards in order, each a list of its lines; checks the file format on the way."""
    articles = []
    for path in shards(output_dir):
        text = path.read_text(encoding="utf-8")
        # A blank line ends every article, the shard's last too: read in order as one text, shards join no articles.
        assert text and not text.startswith("\n") and text.endswith("\n\n") and not text.endswith("\n\n\n"), path
        assert "\n\n\n" not in text, path
        articles.extend(article.split("\n") for article in text[:-2].split("\n\n"))
    return articles


def all_lines(articles):
    return [line for article in articles for line in article]


@pytest.fixture(scope="module")
def enwiki(tmp_path_factory):
    out = tmp_path_factory.mktemp("enwiki")
    result = prepare(dump(ENWIKI), out, "--num_workers=2", "--shard_size_mb=1")
    return out, result, read_articles(out)


def test_every_article_with_text_comes_out(enwiki):
    out, result, articles = enwiki
    assert "warning" not in result.stderr  # a whole dump, closed by </mediawiki>
    expected = articles_in_dump(dump(ENWIKI))
    assert len(expected) == 106  # 206 pages, 100 of them redirects
    assert without_prose(expected) == ENWIKI_EMPTY
    assert len(articles) == len(expected) - len(ENWIKI_EMPTY) - len(ENWIKI_DISAMBIGUATION)
    assert result.stdout.strip() == result.stdout.strip().splitlines()[0]
    assert "106 articles in, 103 articles written" in result.stdout
    assert f"{sum(map(len, articles))} sentences, 3 shard(s)" in result.stdout
    assert articles[0][0].startswith("Anarchism is a political philosophy")
    assert articles[-1][0].startswith("In mathematics and computer science, an algorithm")


def test_bert_create_data_reads_the_shards_as_one_document_an_article(enwiki, tmp_path):
    out, _, articles = enwiki
    vocab = shared_file("vocab", "uncased_vocab.txt")
    # Reference mode carries a document on into the next file, as the reference does: shards must not join articles.
    result = run_cli("create_data", f"--input_file={out}/wiki_*.txt", f"--vocab_file={vocab}",
                     f"--output_file={tmp_path / 'wiki.tfrecord'}", "--dupe_factor=1")
    assert result.returncode == 0, result.stderr
    assert len(shards(out)) == 3 and f"bert-create-data: {len(articles)} documents -> " in result.stdout


def test_shards_are_about_the_size_asked_for(enwiki):
    out, _, _ = enwiki
    sizes = [path.stat().st_size for path in shards(out)]
    assert [path.name for path in shards(out)] == ["wiki_00000.txt", "wiki_00001.txt", "wiki_00002.txt"]
    assert all(1 << 20 <= size < (1 << 20) + 100_000 for size in sizes[:-1]), sizes
    assert [name for name in os.listdir(out) if name.startswith(".")] == [".lock"]  # empty, never written


def test_same_text_whatever_the_workers_and_shard_size(enwiki, tmp_path):
    out, _, _ = enwiki
    prepare(dump(ENWIKI), tmp_path, "--num_workers=1")
    assert len(shards(tmp_path)) == 1
    assert shards(tmp_path)[0].read_text(encoding="utf-8") == "".join(
        path.read_text(encoding="utf-8") for path in shards(out)
    )


def test_no_markup_headings_or_lists_left(enwiki):
    lines = all_lines(enwiki[2])
    for residue in RESIDUE:
        assert not [line for line in lines if residue in line], residue
    assert not [line for line in lines if re.search(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>", line)]
    assert not [line for line in lines if line[0] in "*#;"]
    # Section headings, and bold lines that serve as headings over lists ('''Notes''').
    headings = set()
    for _, text in articles_in_dump(dump(ENWIKI)):
        headings.update(m.group(1) for m in re.finditer(r"^=+ *([\w ,]+?) *=+ *$", text, re.MULTILINE))
        headings.update(m.group(1) for m in re.finditer(r"^'''([\w ,]+)''' *$", text, re.MULTILINE))
    assert {"Etymology and terminology", "History", "See also", "External links", "Notes", "New Jersey"} <= headings
    assert not [line for line in lines if line in headings or line.endswith(".") and line[:-1] in headings]
    assert "Etymology and terminology." not in lines
    # Euclid's algorithm, written in lines that start with a space: MediaWiki shows them as code.
    assert "INPUT L, S" not in lines and "GOTO 10" not in lines and "R ← S" not in lines
    # What a list it introduced leaves of a disambiguation page, or of an article's end.
    assert not {"Ada may refer to:", "Austin may also refer to:", "Argument may also refer to:"} & set(lines)
    assert "The first two lines of the \"Iliad\" read:" in lines  # the quotation stays too


def test_sentences_are_clean_lines(enwiki):
    lines = all_lines(enwiki[2])
    assert all(len(line) >= 2 for line in lines)
    assert all(line == " ".join(line.split()) for line in lines), "whitespace not normalised"
    assert "&amp;" not in "\n".join(lines) and "&lt;" not in "\n".join(lines)
    assert not [line for line in lines if re.fullmatch(r"(formula|codice)_\d+\W*", line)]


def test_sentence_splits_are_sane(enwiki):
    articles = enwiki[2]
    lines = set(all_lines(articles))
    # A known sentence of a known article is one line.
    assert "Anarchism considers the state to be undesirable, unnecessary, and harmful." in articles[0]
    # Abbreviations, initials and decimal numbers do not end a sentence.
    for sentence in [
        "St. Stephens, now abandoned, served as the territorial capital from 1817 to 1819.",
        "R. S. P. Beekes has suggested a Pre-Greek origin of the name.",
        "H. N. Abrams also published a wall calendar colouring book version for children the same year.",
        "Phenomena such as civilization, technology (e.g. within anarcho-primitivism), and the democratic process "
        "may be sharply criticised within some anarchist tendencies and simultaneously lauded in others.",
        "The high point came in 1922 with the dedication of the Lincoln Memorial on the National Mall in "
        "Washington, D.C.",
        "Before the 1940s, the CNT was the major force in Spanish working class politics, attracting 1.58 million "
        "members at one point and playing a major role in the Spanish Civil War.",
        # Wrapped over four lines of wikitext, which MediaWiki joins into one paragraph.
        "Example: Teaching experiments could be performed by a university department to find a good introductory "
        "textbook, with each text considered a treatment.",
        # Wrapped where a line starts with a quotation mark or a formula (XML-escaped: "&quot;", "&lt;math&gt;").
        '"[W]e think of the analysis of variance as a way of understanding and structuring multilevel models—not as '
        'an alternative to regression but as a tool for summarizing complex high-dimensional inferences ..."',
        "If it is written formula_15, the reader should guess from the context, does it mean a single-index object, "
        "evaluated while the subscript is equal to product of variables formula_16, formula_12 and formula_18, or it "
        "is indication to a trivalent tensor.",
        # A citation's page.
        "Burgin (2005, p. 24) uses a generalized definition of algorithms that relaxes the common requirement that "
        "the output of the algorithm that computes a function must be determined after a finite number of steps.",
    ]:
        assert sentence in lines, sentence
    assert any(line.startswith("Dr. Samuel Jutzi, director of FAO's animal production") for line in lines)
    assert any(line.startswith('L. Susan Brown claims that "as anarchism is a political philosophy') for line in lines)
    assert any(line.startswith("Alaska () is a U.S. state situated in the northwest extremity") for line in lines)
    assert any("from c. AD 600 to c. 1100 except through the Latin translation" in line for line in lines)
    assert not [line for line in lines if re.fullmatch(r"(?:[A-Z][a-z]{0,3}|\d+)\.", line)]
    # A quoted "?" or "!" inside a sentence does not end it: no line starts with the sentence's rest.
    assert '"What were you doing, and why?" asked the Guru.' in lines
    assert any(line.startswith('These commandments are also distilled into the maxim "Four legs good, two legs bad!" '
                               "which is primarily used by the sheep") for line in lines)
    assert not [line for line in lines if line.startswith(("asked the Guru", "which is primarily used"))]


def test_table_markup_leaves_no_residue(tmp_path):
    path = dump(TABLES)
    result = prepare(path, tmp_path, "--num_workers=2")
    articles = read_articles(tmp_path)
    # This export has no <siteinfo>: wikiextractor alone extracts nothing from it.
    assert len(articles) == len(articles_in_dump(path)) == 5
    assert "5 articles in, 5 articles written" in result.stdout
    lines = all_lines(articles)
    for residue in RESIDUE + ("|-", "cellpadding", "style=", "colspan", "rowspan", "wikitable", "align="):
        assert not [line for line in lines if residue in line], residue
    assert not [line for line in lines if line[0] in "|!"]
    assert (
        "Since 1949, only two constructive votes of no confidence have been attempted, and only one has been "
        "successful." in lines
    )


def test_truncated_viwiki_dump_still_yields_its_articles(tmp_path):
    path = dump(VIWIKI)
    assert not path.read_text(encoding="utf-8").rstrip().endswith("</mediawiki>")
    result = prepare(path, tmp_path, "--num_workers=2")
    assert (f"bert-prepare-wiki: warning: --input_file: {path} ends before its closing </mediawiki> tag: cut short (an "
            "interrupted download?), it yields only the pages before the cut") in result.stderr.splitlines()
    articles = read_articles(tmp_path)
    expected = articles_in_dump(path)
    assert without_prose(expected) == VIWIKI_EMPTY
    titles = [title for title, _ in expected if title not in VIWIKI_EMPTY]
    assert titles == ["Internet Society", "Tiếng Việt", "Ohio", "California", "Thụy Điển"]
    assert len(articles) == len(titles)
    for title, article in zip(titles, articles):
        assert article[0].startswith(title), (title, article[0])
    # The last page before the cut comes out whole, up to its last paragraph.
    assert len(articles[-1]) > 100
    reference = (path.parent / "text" / "AA" / "wiki_00").read_text(encoding="utf-8")
    assert articles[-1][-1] in reference


def test_min_article_chars_drops_short_articles(tmp_path):
    prepare(dump(VIWIKI), tmp_path / "all", "--num_workers=1")
    everything = read_articles(tmp_path / "all")
    # An article's characters are those of its sentences; the threshold falls between two articles' sizes.
    sizes = sorted(sum(map(len, article)) for article in everything)
    threshold = (sizes[1] + sizes[-2]) // 2
    long_enough = [article for article in everything if sum(map(len, article)) >= threshold]
    assert 0 < len(long_enough) < len(everything)
    result = prepare(dump(VIWIKI), tmp_path / "long", "--num_workers=1", f"--min_article_chars={threshold}")
    assert read_articles(tmp_path / "long") == long_enough
    assert f"articles in, {len(long_enough)} articles written" in result.stdout


def test_missing_input_file(tmp_path):
    missing = tmp_path / "enwiki-missing.xml.bz2"
    result = run_cli("prepare_wiki", f"--input_file={missing}", f"--output_dir={tmp_path / 'out'}")
    assert_clean_failure(result, "--input_file", str(missing))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content", [("notes.xml", b"just some text\n"), ("notes.xml.bz2", b"not bzip2\n")])
def test_input_that_is_no_dump(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    result = run_cli("prepare_wiki", f"--input_file={path}", f"--output_dir={out}")
    assert_clean_failure(result, "--input_file", str(path))
    assert not out.exists()


def test_dump_without_articles(tmp_path):
    path = tmp_path / "empty.xml"
    path.write_text("<mediawiki>\n</mediawiki>\n", encoding="utf-8")
    out = tmp_path / "corpora" / "out"
    result = run_cli("prepare_wiki", f"--input_file={path}", f"--output_dir={out}", "--num_workers=1")
    assert_clean_failure(result, "no article with text", str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.xml"]  # nor the parent it made for --output_dir


def test_output_dir_that_is_a_file(tmp_path):
    out = tmp_path / "taken"
    out.write_text("x", encoding="utf-8")
    result = run_cli("prepare_wiki", f"--input_file={dump(VIWIKI)}", f"--output_dir={out}")
    assert_clean_failure(result, "--output_dir", str(out))
    assert out.read_text(encoding="utf-8") == "x"


def test_existing_shards_are_refused_then_replaced_with_overwrite(tmp_path):
    old = {"wiki_00000.txt": "Old first.\n", "wiki_00007.txt": "Old eighth.\n", "notes.md": "mine\n"}
    for name, text in old.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = run_cli("prepare_wiki", f"--input_file={dump(VIWIKI)}", f"--output_dir={tmp_path}")
    assert_clean_failure(result, "--output_dir", "--overwrite")
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == old

    # Nor is a dump named as a shard among them replaced.
    inside = tmp_path / "wiki_vi.txt"
    inside.write_bytes(dump(VIWIKI).read_bytes())
    result = run_cli("prepare_wiki", f"--input_file={inside}", f"--output_dir={tmp_path}", "--overwrite")
    assert_clean_failure(result, f"--input_file: {inside} is one of the wiki_*.txt files of --output_dir, which "
                                 "--overwrite replaces")
    assert inside.read_bytes() == dump(VIWIKI).read_bytes()
    inside.unlink()
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == old

    prepare(dump(VIWIKI), tmp_path, "--overwrite", "--num_workers=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "notes.md", "wiki_00000.txt"]
    assert read_articles(tmp_path)[0][0].startswith("Internet Society")


def test_a_run_killed_while_replacing_a_corpus_leaves_it_whole_and_the_next_run_sweeps_up(tmp_path):
    path = dump(ENWIKI)
    old = {"wiki_00000.txt": "Old first.\n", "wiki_00007.txt": "Old eighth.\n"}
    for name, text in old.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "bert.prepare_wiki", f"--input_file={path}", f"--output_dir={tmp_path}", "--overwrite",
         "--shard_size_mb=1", "--num_workers=1"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The first new shard is written: until the last is, the corpus in view is the old one.
    wait_for(tmp_path / ".wiki_00000.txt.staged", process)
    process.kill()
    process.wait()
    assert {p.name: p.read_text(encoding="utf-8") for p in shards(tmp_path)} == old
    assert [p.name for p in tmp_path.glob(".wikiextractor-*")]  # what the next run sweeps up

    prepare(path, tmp_path, "--overwrite", "--shard_size_mb=1", "--num_workers=1")
    assert [p.name for p in shards(tmp_path)] == ["wiki_00000.txt", "wiki_00001.txt", "wiki_00002.txt"]
    assert read_articles(tmp_path)[0][0].startswith("Anarchism is a political philosophy")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".lock"]


SIGNALLED_WHILE_RENAMING = """\
import os, runpy, signal

# SIGTERM comes as the second shard is renamed into place, the first already replaced.
replace, renamed = os.replace, []


def signalled_replace(source, destination):
    if os.path.basename(destination).startswith("wiki_"):
        renamed.append(destination)
        if len(renamed) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    return replace(source, destination)


os.replace = signalled_replace
runpy.run_module("bert.prepare_wiki", run_name="__main__", alter_sys=True)
"""


def test_a_sigterm_while_the_shards_are_put_in_place_waits_for_them(tmp_path):
    script = tmp_path / "signalled_prepare_wiki.py"
    script.write_text(SIGNALLED_WHILE_RENAMING)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("wiki_00000.txt", "wiki_00007.txt"):
        (out / name).write_text("An old corpus.\n\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), f"--input_file={dump(ENWIKI)}", f"--output_dir={out}",
                             "--overwrite", "--shard_size_mb=1", "--num_workers=1"], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    assert result.returncode == 0, result.stderr
    assert ("bert-prepare-wiki: warning: SIGTERM came while the shards were put in place; they are complete, and the "
            "command finished") in result.stderr.splitlines()
    assert [p.name for p in shards(out)] == ["wiki_00000.txt", "wiki_00001.txt", "wiki_00002.txt"]
    assert read_articles(out)[0][0].startswith("Anarchism is a political philosophy")


def test_a_second_run_on_an_output_dir_in_use_is_refused_and_sweeps_nothing(tmp_path):
    staged = tmp_path / ".wiki_00000.txt.staged"  # as the run in progress there has written
    staged.write_text("Its first shard.\n", encoding="utf-8")
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run_cli("prepare_wiki", f"--input_file={dump(VIWIKI)}", f"--output_dir={tmp_path}", "--num_workers=1")
    assert_clean_failure(result, f"--output_dir: {tmp_path} is in use by another bert-prepare-wiki run (it holds "
                                 f"{tmp_path / '.lock'})")
    assert staged.read_text(encoding="utf-8") == "Its first shard.\n"


def test_the_template_pass_shows_how_far_wikiextractor_has_read_the_dump(tmp_path):
    import threading

    from bert import prepare_wiki

    dump = tmp_path / "dump.xml"
    dump.write_bytes(b"x" * 10_000)
    # A reader as wikiextractor's template pass is one: it opens the dump, reads it through and closes it.
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         f"dump = open({str(dump)!r}, 'rb', buffering=0)\n"
         "for size in (1234, 766):\n"
         "    dump.read(size); print('read', flush=True); sys.stdin.readline()\n"
         "dump.close(); print('closed', flush=True); sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    finished = threading.Event()
    watcher = threading.Thread(target=prepare_wiki._show_template_pass, args=(reader.pid, str(dump), finished))
    try:
        watcher.start()
        for expected in (1234, 2000, None):
            reader.stdout.readline()
            assert prepare_wiki.read_position(reader.pid, str(dump)) == expected
            if expected:
                watcher.join(1.0)  # the watcher polls twice a second
                assert watcher.is_alive()
            reader.stdin.write("\n")
            reader.stdin.flush()
        # The pass is over once the dump is closed, before wikiextractor ends.
        watcher.join(10)
        assert not watcher.is_alive()
    finally:
        finished.set()
        reader.kill()
        reader.wait()


def small_dump(path, pages, language="en"):
    """A dump of `pages` ((title, [wikitext of each revision]), ...) in the export format, .gz-compressed where
    `path` says so."""
    from xml.sax.saxutils import escape

    lines = [f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="{language}">']
    for number, (title, revisions) in enumerate(pages, 1):
        lines += ["  <page>", f"    <title>{escape(title)}</title>", "    <ns>0</ns>", f"    <id>{number}</id>"]
        for revision, text in enumerate(revisions, 1):
            lines += ["    <revision>", f"      <id>{100 * number + revision}</id>",
                      f'      <text bytes="{len(text)}" xml:space="preserve">{escape(text, {chr(34): "&quot;"})}</text>',
                      "    </revision>"]
        lines.append("  </page>")
    data = ("\n".join(lines + ["</mediawiki>"]) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_ordinals_join_their_sentence_in_a_language_that_writes_them_with_a_full_stop(tmp_path):
    text = ("Hamburg wurde im 13. Jahrhundert Mitglied der Hanse. Am 3. Oktober 1990 kam die Einheit. "
            "Die Stadt liegt an der Elbe. Ihr Bürgermeister starb mit 85. Seine Frau lebte weiter.")
    german = prepare(small_dump(tmp_path / "dewiki.xml.gz", [("Hamburg", [text])], "de"), tmp_path / "de")
    # An ordinal is a day, a month, a century (1 to 31): a sentence ending in 85 ends there.
    assert read_articles(tmp_path / "de") == [["Hamburg wurde im 13. Jahrhundert Mitglied der Hanse.",
                                               "Am 3. Oktober 1990 kam die Einheit.", "Die Stadt liegt an der Elbe.",
                                               "Ihr Bürgermeister starb mit 85.", "Seine Frau lebte weiter."]]
    assert "1 articles in, 1 articles written" in german.stdout
    # In English a number ends a sentence as any word does.
    text = "The port opened in 1913. The city grew fast. He scored 12. The team won."
    prepare(small_dump(tmp_path / "enwiki.xml", [("Port", [text])]), tmp_path / "en")
    assert read_articles(tmp_path / "en") == [["The port opened in 1913.", "The city grew fast.", "He scored 12.",
                                               "The team won."]]


def test_a_closing_quotation_mark_or_bracket_stays_with_its_sentence(tmp_path):
    # blingfire ends a sentence inside 「...」 or “...” and (...) in Chinese and Japanese: the closing mark goes back to
    # its sentence, with no space where there was none; what follows a quotation that ended in a full stop is a
    # sentence of its own, unless Japanese's quoting particle goes on with it.
    pages = [("東京", ["「本当？」と彼は言った。彼は「行こう。」と言った。東京は日本の首都である。"]),
             ("北京", ["他说：“我们会赢。”她回答说：“不一定。”比赛在周日举行（这是真的。）观众很多。"]),
             # Swedish opens a quotation with ”, German closes one with “, French writes « ».
             ("Stockholm", ["Han sa: ”Det är bra.” Sedan gick han. ”Ja”, sa hon."]),
             ("Berlin", ["Das Lied „Stille Nacht“. ”Ja”, sagte sie. Il a dit « non. » Puis il est parti."])]
    prepare(small_dump(tmp_path / "wiki.xml", pages), tmp_path / "out")
    assert read_articles(tmp_path / "out") == [
        ["「本当？」と彼は言った。", "彼は「行こう。」と言った。", "東京は日本の首都である。"],
        ["他说：“我们会赢。”", "她回答说：“不一定。”", "比赛在周日举行（这是真的。）", "观众很多。"],
        ["Han sa: ”Det är bra.”", "Sedan gick han.", "”Ja”, sa hon."],
        # wikiextractor takes the spaces inside « » out.
        ["Das Lied „Stille Nacht“.", "”Ja”, sagte sie.", "Il a dit «non.»", "Puis il est parti."]]


def test_code_verse_and_music_blocks_are_no_sentences(tmp_path):
    text = ("Euclid's method is short. The statement <source lang=\"cbmbas\" inline>LET A=B</source> assigns.\n"
            "<syntaxhighlight lang=\"python\">\ndef gcd(a, b):\n    return a\n</syntaxhighlight>\n"
            "<poem>\nRoses are red\nViolets are blue\n</poem>\n"
            "<score>\\relative c' { c4 d e f }</score>\n"
            "It ends there.")
    # A <pre> left open (MediaWiki closes it at the page's end) takes nothing of the next page.
    unclosed = "HTML marks code with <pre> before it.\n\nIt has more to say."
    prepare(small_dump(tmp_path / "enwiki.xml", [("Euclid", [text]), ("HTML", [unclosed]),
                                                 ("Next", ["<pre>x = 1</pre> The next page is whole."])]),
            tmp_path / "out")
    articles = read_articles(tmp_path / "out")
    assert articles[0] == ["Euclid's method is short.", "The statement assigns.", "It ends there."]
    assert len(articles) == 3 and articles[2] == ["The next page is whole."]


def test_preformatted_lines_are_no_sentences_but_what_they_close_stays_closed(tmp_path):
    text = ("Euclid's method in pseudo-code:\n INPUT L, S\n R ← S\n IF R = 0 THEN GOTO 10\nIt ends there.\n"
            # Lines starting with a space inside a template, the last closing it: the template goes, no more.
            "{{Infobox person\n | name = Euclid\n   a caption over two lines }}\nThe box is gone.\n"
            "{{Quote|text=An infobox line\n more of it}}\n"
            # A table whose first line starts with a space: it goes whole, its cells are no text.
            ' {| class="wikitable"\n|-\n| A cell\n|}\nAfter the table.')
    first_line = " 10 PRINT X\n 20 GOTO 10\n\nA program that never ends."
    # Inside a quotation such a line is text, also in one the page leaves open.
    quotations = ("He wrote:\n<blockquote>\n The quoted sentence is prose.\n</blockquote>\n for (i = 0; i <n; i++) f();\n"
                  "Then she wrote:\n<blockquote>\n Hers is left open.")
    prepare(small_dump(tmp_path / "enwiki.xml", [("Euclid", [text]), ("Loop", [first_line]), ("Quotes", [quotations])]),
            tmp_path / "out")
    assert read_articles(tmp_path / "out") == [["Euclid's method in pseudo-code:", "It ends there.", "The box is gone.",
                                                "After the table."], ["A program that never ends."],
                                               ["He wrote:", "The quoted sentence is prose.", "Then she wrote:",
                                                "Hers is left open."]]


def test_a_sentence_ending_in_a_colon_goes_where_no_text_follows_it(tmp_path):
    disambiguation = ("'''Ada''' may refer to:\n* [[Ada Lovelace]], a mathematician\n* [[Ada (language)]]\n"
                      "'''Ada''' may also refer to:\n* [[Ada, Oklahoma]]")
    # A display formula, indented (a formula on a line of its own but not indented is inside the paragraph).
    text = ("The formula reads:\n:<math>x = y</math>\n\n"
            "He said:\n<blockquote>We shall see.</blockquote>\n\nTwo kinds are known. They are:\n* one\n* two")
    prepare(small_dump(tmp_path / "enwiki.xml", [("Ada", [disambiguation]), ("Kinds", [text])]), tmp_path / "out")
    assert read_articles(tmp_path / "out") == [["He said:", "We shall see.", "Two kinds are known."]]


def test_code_and_wrapped_paragraphs_are_cleaned_up_wherever_the_dump_is_read_in_blocks(tmp_path):
    # About 3.2 MB: the dump is read in blocks of about 1 MiB, whose ends fall inside the code block and the
    # paragraph, each of them about 300 kB, unless the blocks end at a page's end.
    def filler(number, size):
        paragraphs, length = [], 0
        while length < size:
            paragraphs.append(f"Filler sentence {len(paragraphs)} of page {number}.")
            length += len(paragraphs[-1]) + 2
        return "\n\n".join(paragraphs)

    code = '<syntaxhighlight lang="text">\n' + "\n".join(f"codeline {i}" for i in range(30_000)) + "\n</syntaxhighlight>"
    wrapped = "\n".join(f"Sentence {i} is wrapped\nover two lines." for i in range(9_000))
    path = small_dump(tmp_path / "enwiki.xml", [("Code", [filler(1, 1_900_000) + "\n\n" + code + "\n\nAfter the code."]),
                                                ("Wrapped", [filler(2, 700_000) + "\n\n" + wrapped])])
    text = path.read_text(encoding="utf-8")
    assert text.index("codeline 0") < 2 << 20 < text.index("codeline 29999")
    assert text.index("Sentence 0 is") < 3 << 20 < text.index("Sentence 8999 is")
    prepare(path, tmp_path / "out", "--num_workers=1")
    code_page, wrapped_page = read_articles(tmp_path / "out")
    assert code_page[-1] == "After the code." and not [line for line in code_page if "codeline" in line]
    sentences = [line for line in wrapped_page if not line.startswith("Filler")]
    assert sentences == [f"Sentence {i} is wrapped over two lines." for i in range(9_000)]


def test_a_history_dump_is_refused_before_anything_is_written(tmp_path):
    path = small_dump(tmp_path / "history.xml", [("Hamburg", ["An old text.", "Hamburg is a city."])])
    out = tmp_path / "out"
    result = run_cli("prepare_wiki", f"--input_file={path}", f"--output_dir={out}", "--num_workers=1")
    assert_clean_failure(result, f"--input_file: {path} holds several revisions of a page", "pages-articles dump")
    assert not out.exists()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_to_the_command_alone_ends_wikiextractor_too_and_leaves_nothing(tmp_path, signal_number):
    import psutil

    out = tmp_path / "new" / "out"
    # As `kill` or `docker stop` sends it, or a closed ssh session: to the command alone, not to wikiextractor's.
    process = subprocess.Popen(
        [sys.executable, "-m", "bert.prepare_wiki", f"--input_file={dump(ENWIKI)}", f"--output_dir={out}",
         "--num_workers=2"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob(".wikiextractor-*/text/*/wiki_*")):  # extracting, its workers at work
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline, "wikiextractor wrote nothing within 300 s"
        time.sleep(0.05)
    extractors = psutil.Process(process.pid).children(recursive=True)
    assert len(extractors) >= 2
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, stderr
    what = "interrupted" if signal_number == signal.SIGINT else "terminated"
    assert message_lines(stderr) == [f"bert-prepare-wiki: error: {what}; no output was finalised"]
    gone, alive = psutil.wait_procs(extractors, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert not (tmp_path / "new").exists()  # the directories it made, with wikiextractor's output and the lock

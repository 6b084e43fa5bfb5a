"""The 3D Slicer Extensions Index's own checks, run on MedRegionCT's catalog entry and CMake metadata.

The check functions are imported from the Index's script (`../shared/reference/slicer-extensions-index`, the
Index at a fixed commit) and run as they are. The checks that need the network get their downloads from local
copies instead: the catalog-entry schema from the Index's `schemas/` folder, and the icon and screenshot URLs
(raw.githubusercontent.com/<repo>/main/<path>) from this checkout's files. Not run: cloning the repository and
reading its GitHub topics (both need GitHub).
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT.parent / "shared" / "reference" / "slicer-extensions-index"
if not (INDEX / "scripts" / "check_description_files.py").is_file():
    pytest.skip(f"{INDEX} not found (the Extensions Index scripts live in the shared reference folder)",
                allow_module_level=True)
pytest.importorskip("jsonschema")
requests = pytest.importorskip("requests")

ENTRY = ROOT / "MedRegionCT.json"
NAME = ENTRY.stem


@pytest.fixture(scope="module")
def index():
    """The Index's check script as a module. Its print_categories (a listing helper no check uses) holds a
    Python 3.12 f-string; on older Pythons that one function is left out, every check runs as written."""
    path = INDEX / "scripts" / "check_description_files.py"
    source = path.read_text(encoding="utf-8")
    if sys.version_info < (3, 12):
        source = re.sub(r"\ndef print_categories\(.*?(?=\ndef )", "\n", source, flags=re.S)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("check_description_files", None))
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def metadata(index):
    return index.parse_json(str(ENTRY))


class _Response:
    def __init__(self, url, body: bytes, content_type: str):
        self.url, self.content, self.headers = url, body, {"Content-Type": content_type}
        self.status_code = 200

    def raise_for_status(self):
        pass

    def json(self):
        return json.loads(self.content)


def _repository_files(destination: Path) -> Path:
    """The files a clone of this repository has (tracked, plus new files not ignored), copied to
    ``destination``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture()
def offline(index, monkeypatch, tmp_path):
    """requests.get for the Index's script, answered from local copies; anything else fails as offline."""
    clone = _repository_files(tmp_path / "clone")
    repo = re.sub(r"\.git$", "", index.urlparse.urlsplit(json.loads(ENTRY.read_text())["scm_url"]).path.strip("/"))
    raw = f"https://raw.githubusercontent.com/{repo}/main/"
    types = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}

    def get(url, *args, **kwargs):
        if url.startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"):
            local = INDEX / "schemas" / url.rsplit("/", 1)[1]
            if local.is_file():
                return _Response(url, local.read_bytes(), "application/json")
        if url.startswith(raw):
            local = clone / url[len(raw):]
            if local.is_file():
                return _Response(url, local.read_bytes(), types.get(local.suffix.lower(), "text/plain"))
            raise requests.HTTPError(f"404 Not Found: {url}")
        raise requests.ConnectionError(f"offline test: {url} is not available here")

    monkeypatch.setattr(index.requests, "get", get)
    return clone


def test_catalog_entry_passes_the_index_checks(index, metadata, offline):
    checks = [
        ("check_json_schema", (NAME, metadata)),
        ("check_json_file_format", (NAME, metadata, str(ENTRY))),
        ("check_extension_name", (NAME, metadata)),
        ("check_category", (NAME, metadata)),
        ("check_git_repository_name", (NAME, metadata)),
        ("check_scm_url_syntax", (NAME, metadata)),
        ("check_repository_size", (NAME, metadata, str(offline))),
        ("check_cmakelists_content", (NAME, metadata, str(offline))),
        ("check_license_file", (NAME, metadata, str(offline))),
    ]
    for name, args in checks:
        try:
            getattr(index, name)(*args)
        except index.ExtensionCheckError as error:
            pytest.fail(f"the Index's {name} fails: {error}")


def test_the_old_metadata_would_have_been_rejected(index, metadata, offline):
    """Defects: category "Radiology" is not accepted, the repository name must start with "Slicer"."""
    with pytest.raises(index.ExtensionCheckError, match="Category \\*\\*`Radiology`\\*\\* is unknown"):
        index.check_category(NAME, {**metadata, "category": "Radiology"})
    with pytest.raises(index.ExtensionCheckError, match="should\\* start with 'Slicer'"):
        index.check_git_repository_name(NAME, {**metadata, "scm_url": "https://github.com/medregionct/MedRegionCT.git"})
    with pytest.raises(index.ExtensionCheckError, match="JSON schema validation failed"):
        index.check_json_schema(NAME, {**metadata, "contributors": "MedRegionCT developers"})
    broken = offline / "CMakeLists.txt"
    broken.write_text(broken.read_text(encoding="utf-8").replace("Screenshots/", "Screenshots/missing_"),
                      encoding="utf-8")
    with pytest.raises(index.ExtensionCheckError, match="EXTENSION_SCREENSHOTURLS"):
        index.check_cmakelists_content(NAME, metadata, str(offline))


def test_submission_folder_passes_the_index_structure_and_dependency_checks(index, tmp_path):
    """What a pull request to the Index adds is this one .json file: the Index's structure check and its
    dependency check pass on a copy of the Index folder holding it."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(INDEX / "scripts" / "check_repository_structure.py", tmp_path / "scripts")
    shutil.copy2(ENTRY, tmp_path / ENTRY.name)
    (tmp_path / "README.md").write_text("index\n")
    run = subprocess.run([sys.executable, str(tmp_path / "scripts" / "check_repository_structure.py")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    index.check_dependencies(str(tmp_path))  # raises ExtensionDependencyError for an unknown dependency


def test_contributors_are_name_and_organisation():
    """Defect: the contributors field was a placeholder. The Index asks for "Name (Organisation)" entries."""
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    entries = [e.strip() for e in contributors.split(",")]
    assert entries and all(re.fullmatch(r"[^()]+ \([^()]+\)", e) for e in entries), contributors
    module = (ROOT / "MedRegionCT" / "MedRegionCT.py").read_text(encoding="utf-8")
    listed = re.search(r"self\.parent\.contributors = \[(.*?)\]", module).group(1)
    assert [e.strip().strip('"') for e in listed.split('",')] == entries
    assert "developers\"" not in cmake


def test_cmake_project_name_matches_the_entry_name(index, metadata, offline):
    cmake = (offline / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.IGNORECASE)[0] == NAME
    module = (ROOT / "MedRegionCT" / "MedRegionCT.py").read_text(encoding="utf-8")
    category = json.loads(ENTRY.read_text())["category"]
    assert category in index.ACCEPTED_EXTENSION_CATEGORIES
    assert f'self.parent.categories = [_("{category}")]' in module  # the module sits in the same category

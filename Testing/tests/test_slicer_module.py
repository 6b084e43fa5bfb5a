"""The Slicer extension without Slicer: the module file against its .ui (widget names and classes, parameter
bindings, no API key or consent in the saved state), ruff and compilation, the catalog entry and the CMake
metadata, the library files the module ships, and the Qt-free support code of the module (engine choice with
consent, report panel links, export, the background job)."""

import ast
import importlib.util
import json
import py_compile
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from MedRegionCTLib.errors import CancelledError, InputError
from MedRegionCTLib.progress import check_cancel
from MedRegionCTLib.report import Report
from MedRegionCTLib.report.document import Evidence, Finding, Provenance, RegionReport, Sentence
from MedRegionCTLib.slicer_mrml import (
    ThreadJob,
    export_report,
    load_api_key,
    region_key_from_link,
    report_panel_html,
    reporter_for_engine,
    store_api_key,
)

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "MedRegionCT"
MODULE = MODULE_DIR / "MedRegionCT.py"
GUI_DIR = MODULE_DIR / "MedRegionCTGui"
UI = MODULE_DIR / "Resources" / "UI" / "MedRegionCT.ui"
# Widget class from the name's suffix (checked for every widget of the .ui, so the rule holds)
SUFFIX_CLASS = (("CollapsibleButton", "ctkCollapsibleButton"), ("PathLineEdit", "ctkPathLineEdit"),
                ("Selector", "qMRMLNodeComboBox"), ("ComboBox", "QComboBox"), ("Button", "QPushButton"),
                ("CheckBox", "QCheckBox"), ("LineEdit", "QLineEdit"), ("progressBar", "QProgressBar"),
                ("Label", "QLabel"), ("Frame", "QFrame"))
# pieces of the library that are not shipped with the extension (torch, training, server, command line)
EXCLUDED_PACKAGES = ("train", "server", "evaluate", "cli")
MODEL_SHIPPED = ("__init__.py", "config.py", "preprocess.py")
HEAVY = ("torch", "transformers", "peft", "monai", "fastapi", "uvicorn", "nltk", "rouge_score")


def _ui_widgets():
    root = ET.parse(UI).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _prop(widget, name):
    for p in widget.findall("property"):
        if p.get("name") == name:
            child = list(p)[0]
            return [s.text for s in child] if child.tag == "stringlist" else child.text
    return None


def _module_tree():
    return ast.parse(MODULE.read_text(encoding="utf-8"))


def _expected_class(name):
    for suffix, cls in SUFFIX_CLASS:
        if name.endswith(suffix):
            return cls
    return None


# --- the .ui and the module code ----------------------------------------------------------------------------
def _gui_text():
    return "\n".join(f.read_text(encoding="utf-8") for f in [MODULE, *sorted(GUI_DIR.glob("*.py"))])


def test_ui_widgets_used_by_the_module_exist_with_their_class():
    widgets = _ui_widgets()
    assert widgets.pop("MedRegionCT").get("class") == "qMRMLWidget"
    for name, w in widgets.items():
        assert _expected_class(name) == w.get("class"), f"{name} is a {w.get('class')}"
    used = set(re.findall(r"self\.ui\.(\w+)", _gui_text())) | set(re.findall(r"gui\.ui\.(\w+)", _gui_text()))
    assert len(used) >= 20
    missing = used - set(widgets)
    assert not missing, f"the module uses widgets the .ui lacks: {sorted(missing)}"
    # the widgets a user needs are all there
    for name in ("inputVolumeSelector", "segmentationSourceComboBox", "schemaComboBox", "engineComboBox",
                 "serverUrlLineEdit", "apiKeyLineEdit", "testConnectionButton", "consentCheckBox", "applyButton",
                 "cancelButton", "progressBar", "showReportButton", "batchButton"):
        bound = _prop(widgets[name], "SlicerParameterName")
        assert name in used or bound, f"{name} is in the .ui but neither the code nor the parameter node uses it"


def test_parameter_bindings_match_the_parameter_node():
    tree = _module_tree()
    wrapper = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MedRegionCTParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in wrapper.decorator_list)
    fields = {s.target.id: ast.unparse(s.annotation) for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    defaults = {s.target.id: ast.literal_eval(s.value) for s in wrapper.body if isinstance(s, ast.AnnAssign)
                and s.value is not None}
    assert defaults["segmentationSource"] == "auto"  # the best engine available by default
    bound = {}
    for name, w in _ui_widgets().items():
        param = _prop(w, "SlicerParameterName")
        if param:
            bound[param] = (name, w)
    assert set(bound) <= set(fields), f"bound to unknown parameters: {set(bound) - set(fields)}"
    for param, (name, w) in bound.items():
        if w.get("class") == "qMRMLNodeComboBox":
            assert _prop(w, "nodeTypes") == [fields[param]], name
    assert {"inputVolume", "inputSegmentation", "lesions", "serverUrl"} <= set(bound)
    # secrets and consent are never saved with the scene
    assert not [f for f in fields if "key" in f.lower() or "consent" in f.lower() or "password" in f.lower()]
    widgets = _ui_widgets()
    assert _prop(widgets["apiKeyLineEdit"], "echoMode") == "QLineEdit::Password"
    assert _prop(widgets["apiKeyLineEdit"], "SlicerParameterName") is None
    assert _prop(widgets["consentCheckBox"], "SlicerParameterName") is None
    assert _prop(widgets["consentCheckBox"], "checked") == "false"
    text = _gui_text()
    assert "QSettings" not in text and "settingsValue" not in text  # no plain-text settings for the key


def test_module_files_parse_on_python_39_and_pass_ruff(tmp_path):
    """Slicer 5.6/5.8 ship Python 3.9: the module and its Qt package must parse there, so that an old Slicer
    reaches the version check and says what is wrong instead of failing on a syntax error."""
    files = [MODULE, *sorted(GUI_DIR.glob("*.py"))]
    assert {f.name for f in files} >= {"MedRegionCT.py", "bootstrap.py", "widget.py", "panel.py", "jobs.py"}
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / "m.pyc"), doraise=True)
        ast.parse(f.read_text(encoding="utf-8"), filename=str(f), feature_version=(3, 9))
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # 3.10 builtins and runtime unions that 3.9 parses but cannot run
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
                assert not [k for k in node.keywords if k.arg == "strict"], f"{f.name}: zip(strict=) needs 3.10"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                assert not isinstance(node.args[1], ast.BinOp), f"{f.name}: isinstance(x, A | B) needs 3.10"
            assert not isinstance(node, ast.Match), f"{f.name}: match needs 3.10"
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    run = subprocess.run([ruff, "check", "--no-cache", "--target-version", "py39", *map(str, files)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _load_bootstrap():
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", GUI_DIR / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_supported_versions_are_stated_once_and_enforced():
    """Defect: the README said 5.10 or later but nothing enforced it."""
    bootstrap = _load_bootstrap()
    assert bootstrap.unsupported_reason((5, 10), (3, 12)) is None
    assert bootstrap.unsupported_reason((5, 11), (3, 12)) is None
    message = bootstrap.unsupported_reason((5, 8), (3, 9))
    assert message.startswith("MedRegionCT needs 3D Slicer 5.10 or later (Python 3.10+); this is Slicer 5.8 with "
                              "Python 3.9.") and "\n" not in message
    assert bootstrap.unsupported_reason((5, 6), (3, 9)) and bootstrap.unsupported_reason((5, 10), (3, 9))
    version = ".".join(map(str, bootstrap.MIN_SLICER))
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(MedRegionCT_MINIMUM_SLICER_VERSION "{version}")' in cmake
    assert "Slicer_VERSION VERSION_LESS MedRegionCT_MINIMUM_SLICER_VERSION" in cmake and "FATAL_ERROR" in cmake
    assert f"3D Slicer {version} or later" in (ROOT / "README.md").read_text(encoding="utf-8")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["requires-python"] == ">={}.{}".format(*bootstrap.MIN_PYTHON)


def test_library_is_found_beside_the_module_or_in_the_checkout_never_installed(tmp_path, monkeypatch):
    """Defect: when the library was missing the module ran `pip install MedRegionCTLib`, a name no index has."""
    bootstrap = _load_bootstrap()
    assert Path(bootstrap.find_library(str(MODULE_DIR))) == ROOT / "MedRegionCTLib"  # importable here
    import importlib.util as iu

    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None)
    checkout = tmp_path / "checkout"
    (checkout / "MedRegionCTLib").mkdir(parents=True)
    (checkout / "MedRegionCTLib" / "__init__.py").write_text("")
    (checkout / "MedRegionCT").mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert Path(bootstrap.find_library(str(checkout / "MedRegionCT"))) == checkout / "MedRegionCTLib"
    assert sys.path[0] == str(checkout)
    with pytest.raises(ImportError, match="reinstall MedRegionCT from the Extensions Manager"):
        bootstrap.find_library(str(tmp_path / "elsewhere" / "MedRegionCT"))
    text = _gui_text()
    assert not re.search(r"pip_install\([^)]*MedRegionCTLib", text) and "LIBRARY_REQUIREMENT" not in text
    assert "torch" not in "".join(re.findall(r"pip_install\(([^)]*)\)", text))


def test_module_imports_nothing_heavy_at_import_time():
    tree = _module_tree()
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert "MedRegionCTLib" not in modules, "the library is imported on first use, never at module import"
    assert modules <= {"contextlib", "logging", "os", "sys", "slicer", "MedRegionCTGui"}
    for f in GUI_DIR.glob("*.py"):
        top = [n for n in ast.parse(f.read_text(encoding="utf-8")).body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
        assert "MedRegionCTLib" not in names, f"{f.name} imports the library at import time"


# --- extension metadata ------------------------------------------------------------------------------------
def _cmake_sets(path):
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"set\((\w+)\s+(.*?)\)", text, re.S)}


def _cmake_string(value):
    return value.strip().strip('"')


def test_extension_cmake_metadata_is_complete():
    sets = _cmake_sets(ROOT / "CMakeLists.txt")
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert _cmake_string(sets.get(f"EXTENSION_{key}", "")), f"EXTENSION_{key} is missing or empty"
    homepage = _cmake_string(sets["EXTENSION_HOMEPAGE"])
    assert homepage.startswith("https://github.com/")
    repo = homepage.removeprefix("https://github.com/")
    raw = f"https://raw.githubusercontent.com/{repo}/main/"
    icon = _cmake_string(sets["EXTENSION_ICONURL"])
    assert icon.startswith(raw) and (ROOT / icon.removeprefix(raw)).is_file()
    assert (ROOT / icon.removeprefix(raw)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for url in _cmake_string(sets["EXTENSION_SCREENSHOTURLS"]).split():
        assert url.startswith(raw) and url.endswith(".png")
        assert url.removeprefix(raw) in (ROOT / "README.md").read_text(encoding="utf-8"), "README shows it"
    assert re.search(r"project\(MedRegionCT\)", text) and "add_subdirectory(MedRegionCT)" in text
    assert len(_cmake_string(sets["EXTENSION_DESCRIPTION"])) > 40
    for key in ("EXTENSION_LICENSE_FILE", "EXTENSION_README_FILE"):  # else the package carries Slicer's own
        assert (ROOT / sets[key].replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")).is_file(), key


def test_catalog_entry_matches_the_cmake_metadata():
    entry = json.loads((ROOT / "MedRegionCT.json").read_text(encoding="utf-8"))
    required = {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision", "scm_url", "tier"}
    assert required <= set(entry)
    assert set(entry) <= required | {"scm_type", "enabled"}  # the schema allows no other properties
    assert "slicer-extension-catalog-entry-schema" in entry["$schema"]
    sets = _cmake_sets(ROOT / "CMakeLists.txt")
    depends = _cmake_string(sets["EXTENSION_DEPENDS"])
    assert entry["build_dependencies"] == ([] if depends == "NA" else depends.split())
    assert entry["category"] == _cmake_string(sets["EXTENSION_CATEGORY"])
    assert entry["scm_url"] == _cmake_string(sets["EXTENSION_HOMEPAGE"]) + ".git"
    assert entry["build_subdirectory"] == "." and entry["tier"] in (1, 3, 5) and entry["scm_revision"]


# --- what the module ships -----------------------------------------------------------------------------------
def _listed(variable):
    sets = _cmake_sets(MODULE_DIR / "CMakeLists.txt")
    return sets[variable].split()


def _shipping_rule():
    out = []
    for p in sorted((ROOT / "MedRegionCTLib").rglob("*.py")):
        parts = p.relative_to(ROOT).parts
        if "__pycache__" in parts or (len(parts) > 2 and parts[1] in EXCLUDED_PACKAGES):
            continue
        if len(parts) > 2 and parts[1] == "model" and parts[-1] not in MODEL_SHIPPED:
            continue
        out.append("/".join(parts))
    return out


def test_module_cmake_lists_its_files():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    gui = sorted(f"MedRegionCTGui/{f.name}" for f in GUI_DIR.glob("*.py"))
    assert _listed("MODULE_PYTHON_SCRIPTS") == ["${MODULE_NAME}.py", *gui]
    resources = [r.replace("${MODULE_NAME}", "MedRegionCT") for r in _listed("MODULE_PYTHON_RESOURCES")]
    assert sorted(resources) == ["Resources/Icons/MedRegionCT.png", "Resources/UI/MedRegionCT.ui"]
    for r in resources:
        assert (MODULE_DIR / r).is_file()
    scripts = _listed("MedRegionCTLib_PYTHON_SCRIPTS")
    expected = _shipping_rule()
    missing, extra = sorted(set(expected) - set(scripts)), sorted(set(scripts) - set(expected))
    assert not missing and not extra, ("MedRegionCT/CMakeLists.txt MedRegionCTLib_PYTHON_SCRIPTS is out of date; "
                                       f"add {missing}, remove {extra}")
    data = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "MedRegionCTLib" / "data").glob("*.json"))
    assert _listed("MedRegionCTLib_PYTHON_RESOURCES") == data


def _top_level_imports(path: Path):
    """Modules a file imports when it is imported (module level, including try/if blocks), resolved."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = package[:-1] if package[-1] == "__init__" else package
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stack, found = list(tree.body), []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append(module)
            found += [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.If | ast.Try):
            stack += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
            for h in getattr(node, "handlers", []):
                stack += h.body
    return found


def test_shipped_library_is_self_contained_and_torch_free():
    shipped = set(_listed("MedRegionCTLib_PYTHON_SCRIPTS"))
    modules = {s.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for s in shipped}
    for file in shipped:
        for name in _top_level_imports(ROOT / file):
            assert name.split(".")[0] not in HEAVY, f"{file} imports {name} at import time"
            if name.startswith("MedRegionCTLib.") and name not in modules:
                # "from .x import name" where name is an attribute, not a module: its module must be shipped
                parent = name.rsplit(".", 1)[0]
                is_module = (ROOT / (name.replace(".", "/") + ".py")).exists() or (
                    ROOT / name.replace(".", "/") / "__init__.py").exists()
                assert not is_module and parent in modules, f"{file} needs {name}, which is not shipped"


# --- Qt-free support of the module -------------------------------------------------------------------------
def _report():
    lung = RegionReport(
        key="lung", name="Lung",
        sentences=[Sentence("A nodule with a diameter of 8.0 mm is identified in the right upper lobe.",
                            Evidence(["lesion:1"]), [1])],
        findings=[Finding(1, "nodule", "Lung nodule", "right upper lobe", "right", {"max_diameter_mm": 8.0})])
    trachea = RegionReport(key="trachea and bronchie", name="Trachea & bronchi <main>",
                           sentences=[Sentence("The trachea is patent.")])
    breast = RegionReport(key="breast", name="Breast", status="outside_field_of_view")
    return Report([lung, trachea, breast], Provenance(reporter="measurement"), impression=[lung.paragraph])


def test_server_needs_consent_and_url():
    assert reporter_for_engine("measurement") == ("measurement", {})
    with pytest.raises(InputError, match="consent"):
        reporter_for_engine("server", "https://gpu.example.org:8750", "k")
    with pytest.raises(InputError, match="consent"):
        reporter_for_engine("server", "https://gpu.example.org:8750", "k", consent="yes")  # only True counts
    with pytest.raises(InputError, match="URL"):
        reporter_for_engine("server", " ", "k", consent=True)
    assert reporter_for_engine("server", " https://gpu.example.org:8750 ", "k", consent=True) == (
        "server:https://gpu.example.org:8750", {"api_key": "k"})
    with pytest.raises(InputError, match="unknown report engine"):
        reporter_for_engine("model")
    if importlib.util.find_spec("keyring") is None:  # no keyring: nothing is stored anywhere
        assert store_api_key("https://gpu.example.org:8750", "secret") is False
        assert load_api_key("https://gpu.example.org:8750") == ""


def test_report_panel_links_lead_to_their_region():
    report = _report()
    html = report_panel_html(report, {"lung": (128, 174, 128)})
    links = re.findall(r'href="([^"]+)"', html)
    assert links == ["region:0", "region:1", "region:2"]
    assert [region_key_from_link(report, link) for link in links] == ["lung", "trachea and bronchie", "breast"]
    assert region_key_from_link(report, "https://example.org") is None
    assert region_key_from_link(report, "region:9") is None
    assert "rgb(128,174,128)" in html and "Trachea &amp; bronchi &lt;main&gt;" in html
    assert "(outside field of view)" in html and "<h3>Impression</h3>" in html


def test_report_panel_shows_the_scope_header_and_contradictions():
    """The panel says which segmentation engine ran and why, what the scope header holds, and every statement the
    measurements contradict (report format v2)."""
    from MedRegionCTLib.report.document import Contradiction
    from MedRegionCTLib.slicer_mrml.support import scope_lines

    report = _report()
    report.provenance.segmenter = "builtin"
    report.provenance.scope = {
        "segmentation": {"engine": "built-in segmenter", "requested": "auto",
                         "reason": "TotalSegmentator cannot run here (not installed)"},
        "chest_ct": True, "notes": ["slices 5 mm thick"], "quality_checks": {"lungs_found": True},
        "coverage": {"lung_apices": "cut"}, "limitations": ["lobes placed by geometric zones"]}
    report.contradictions = [Contradiction(region="lung", sentence=0, text="No nodule is seen.",
                                           claim="nodule absent", measured="nodule 8.0 mm, right upper lobe")]
    lines = scope_lines(report)
    assert lines[0] == ("Segmentation", "built-in segmenter: TotalSegmentator cannot run here (not installed)")
    assert ("Chest CT", "yes") in lines and ("Notes", "slices 5 mm thick") in lines
    assert ("Quality checks", "lungs found: yes") in lines and ("Coverage", "lung apices: cut") in lines
    assert ("Limitations", "lobes placed by geometric zones") in lines
    html = report_panel_html(report)
    assert html.index("Segmentation:") < html.index("Contradicted by the measurements") < html.index("Impression")
    assert "&ldquo;No nodule is seen.&rdquo;" in html and "nodule 8.0 mm, right upper lobe" in html
    assert "flagged, kept as written" in html
    report.provenance.scope = {"chest_ct": False}
    report.contradictions = []
    assert "NO: the scan does not look like a chest CT" in report_panel_html(report)
    assert "Contradicted" not in report_panel_html(report)
    assert scope_lines(report)[0] == ("Segmentation", "builtin")  # a version-1 report: no reason recorded


def test_export_report(tmp_path):
    report = _report()
    assert Report.load(export_report(report, tmp_path / "r.json")).to_json() == report.to_json()
    md = export_report(report, tmp_path / "r.md").read_text(encoding="utf-8")
    assert "right upper lobe" in md
    page = export_report(report, tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "The trachea is patent." in page
    with pytest.raises(InputError, match="DICOM series"):
        export_report(report, tmp_path / "r.dcm")
    with pytest.raises(InputError, match="cannot export"):
        export_report(report, tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()


def test_thread_job_progress_result_cancel_and_error():
    def work(progress, cancel):
        for i in range(5):
            progress((i + 1) / 5, f"step {i + 1}")
        return 42

    job = ThreadJob(work).start()
    assert job.wait(5) and job.poll() == (1.0, "step 5", True) and job.result == 42 and job.error is None

    def slow(progress, cancel):
        for _ in range(1000):
            check_cancel(cancel, "the slow job")
            time.sleep(0.005)
        return "finished"

    job = ThreadJob(slow).start()
    assert not job.poll()[2]
    job.cancel_job()
    assert job.wait(5) and isinstance(job.error, CancelledError) and job.result is None

    def broken(progress, cancel):
        raise InputError("bad input; fix it")

    job = ThreadJob(broken).start()
    assert job.wait(5) and isinstance(job.error, InputError)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_module_cmake_runs_with_stub_slicer_macros(tmp_path):
    """CMake itself reads MedRegionCT/CMakeLists.txt, with stand-ins for Slicer's macros that check every file
    they are given exists (as the real ones do) and report what would be compiled and installed."""
    script = tmp_path / "check.cmake"
    script.write_text("""
set(BUILD_TESTING ON)
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(f ${MY_SCRIPTS} ${MY_RESOURCES})
    if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${f}")
      message(FATAL_ERROR "module file missing: ${f}")
    endif()
    message(STATUS "MODULE ${f}")
  endforeach()
endmacro()
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES"
                        ${ARGN})
  foreach(f ${MY_SCRIPTS} ${MY_RESOURCES})
    if(NOT EXISTS "${MY_SOURCE_DIR}/${f}")
      message(FATAL_ERROR "library file missing: ${f}")
    endif()
    message(STATUS "LIBRARY ${f}")
  endforeach()
endmacro()
function(slicer_add_python_unittest)
  message(STATUS "UNITTEST ${ARGN}")
endfunction()
include("${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.txt")
""", encoding="utf-8")
    run = subprocess.run(["cmake", "-P", str(script)], cwd=MODULE_DIR, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout + run.stderr
    library = re.findall(r"LIBRARY (\S+)", out)
    listed = _listed("MedRegionCTLib_PYTHON_SCRIPTS") + _listed("MedRegionCTLib_PYTHON_RESOURCES")
    assert sorted(library) == sorted(listed) and len(library) > 80
    assert "MODULE MedRegionCT.py" in out and "MODULE Resources/UI/MedRegionCT.ui" in out
    assert "UNITTEST SCRIPT;MedRegionCT.py" in out or "UNITTEST SCRIPT MedRegionCT.py" in out

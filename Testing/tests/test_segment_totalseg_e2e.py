"""The real TotalSegmentator package end to end, through MedRegionCTLib's adapter, with random-weight nnU-Net
checkpoints written in the folder layout TotalSegmentator expects (no download, no real weights).

The checkpoint is built by nnU-Net's own code from a plans.json with a tiny network, so TotalSegmentator's and
nnU-Net's real loading, resampling, sliding-window prediction and multi-label writing all run. The last layer's
bias favours one class ('heart'), so the whole CT must come back as heart: a check that the chain carries the
network's output to the project's label map on the CT's own grid.

Needs the ``totalsegmentator`` test extra in its own environment: TotalSegmentator depends on fury<2, which
needs vtk<9.4, while slicer-core (in the ``test`` extra) pins vtk==9.6.2, so the two cannot share one
environment (see README, "TotalSegmentator end to end"). Skipped where TotalSegmentator is not installed.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("totalsegmentator", reason="TotalSegmentator is not installed here: it cannot share the test "
                    "environment (its fury<2 needs vtk<9.4, slicer-core pins vtk==9.6.2); run this file in an "
                    "environment with the 'totalsegmentator' extra")
pytest.importorskip("nnunetv2", reason="nnunetv2 (TotalSegmentator's engine) is not installed")

FOLDER = "Dataset297_TotalSegmentator_total_3mm_1559subj"
TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
FAVOURED = "heart"

BUILD = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from totalsegmentator.map_to_binary import class_map

    folder, favoured = Path(sys.argv[1]), sys.argv[2]
    names = class_map["total"]
    labels = {"background": 0, **{name: int(i) for i, name in names.items()}}
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]],
                            "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    plans = {
        "dataset_name": folder.parent.name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 3.0, 3.0], "original_median_shape_after_transp": [32, 32, 32],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [32, 32, 32], "median_image_size_in_voxels": [32, 32, 32],
            "spacing": [3.0, 3.0, 3.0], "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": arch, "batch_dice": False}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {"max": 3000.0, "mean": 0.0, "median": 0.0,
                                                              "min": -1024.0, "percentile_00_5": -1000.0,
                                                              "percentile_99_5": 1500.0, "std": 400.0}}}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    heads = manager.get_label_manager(dataset).num_segmentation_heads
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(manager, configuration, 1, heads, enable_deep_supervision=False)
    with torch.no_grad():  # random weights, except a last-layer bias that makes one class win everywhere
        last = network.decoder.seg_layers[-1]
        last.weight.mul_(1e-3)
        last.bias.zero_()
        last.bias[labels[favoured]] = 50.0
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
               folder / "fold_0" / "checkpoint_final.pth")
    print(json.dumps({"heads": heads, "parameters": sum(p.numel() for p in network.parameters())}))
''')

RUN = textwrap.dedent('''
    import json, sys
    import numpy as np
    from MedRegionCTLib.segment import get_segmenter
    from MedRegionCTLib.volume import Volume

    hu = np.full((36, 32, 28), -1000, np.int16)
    hu[6:30, 6:26, 4:24] = 40
    affine = np.array([[-3.0, 0, 0, 50.0], [0, -3.0, 0, 40.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])
    affine[:3, 3] += 1e-7  # finer than float32: the result must still carry the CT's exact affine
    seen = []
    segmenter = get_segmenter("auto", fast=True, device="cpu")
    labels = segmenter.segment(Volume(hu, affine), progress=lambda f, m: seen.append(f))
    print(json.dumps({"selection": segmenter.selection, "names": sorted(set(labels.names.values())),
                      "counts": {n: int((labels.array == i).sum()) for i, n in labels.names.items()},
                      "exact_affine": bool(np.array_equal(labels.affine, affine)), "shape": list(labels.shape),
                      "progress": seen, "tasks": labels.meta["tasks"]}))
''')


def test_real_totalsegmentator_runs_through_the_adapter(tmp_path):
    weights = tmp_path / "weights"
    model = weights / FOLDER / f"{TRAINER}__nnUNetPlans__3d_fullres"
    env = {**os.environ, "TOTALSEG_HOME_DIR": str(tmp_path / "home"), "TOTALSEG_WEIGHTS_PATH": str(weights),
           "nnUNet_results": str(weights), "nnUNet_raw": str(weights), "nnUNet_preprocessed": str(weights)}
    build = subprocess.run([sys.executable, "-c", BUILD, str(model), FAVOURED], env=env, capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    built = json.loads(build.stdout.strip().splitlines()[-1])
    assert built["heads"] == 118  # background + TotalSegmentator's 117 'total' classes
    run = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # 'auto' picked TotalSegmentator because its weights were found, and says so
    assert out["selection"]["engine"] == "totalsegmentator" and "weights" in out["selection"]["reason"]
    assert out["shape"] == [36, 32, 28] and out["exact_affine"]
    assert out["names"] == [FAVOURED] and out["counts"][FAVOURED] == 36 * 32 * 28
    assert out["tasks"] == ["total"]  # no lesion-task weights here: only 'total' ran
    assert out["progress"][-1] == 1.0 and out["progress"] == sorted(out["progress"])
    config = json.loads((tmp_path / "home" / "config.json").read_text())
    assert config["send_usage_stats"] is False  # nothing left the machine

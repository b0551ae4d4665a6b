"""defectflow synth: procedural camera frames of machined parts on a conveyor, with defects.

Public API:
    generate_shift: a folder of full-size frames + labels.csv + defect/region masks.
    generate_dataset: MVTec-AD style crops for the detector and a segmentation set.
    crop_box: the crop rule shared with the scoring pipeline (``models.cropping``).
    render_frame: one frame in memory (image, masks) for tests and experiments.
    render_empty_belt: a frame of bare belt (no part), as between two parts on the conveyor.
"""

from models.cropping import crop_box
from synth.dataset import DatasetSummary, generate_dataset
from synth.defects import DEFECT_TYPES
from synth.frame import Frame, render_empty_belt, render_frame
from synth.shift import ShiftSummary, generate_shift

__all__ = [
    "DEFECT_TYPES",
    "DatasetSummary",
    "Frame",
    "ShiftSummary",
    "crop_box",
    "generate_dataset",
    "generate_shift",
    "render_empty_belt",
    "render_frame",
]

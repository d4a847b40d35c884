"""(being written)"""
from ._image import ImageData

__all__ = ["ImageData"]

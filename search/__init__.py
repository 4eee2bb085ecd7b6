"""The read path: query -> scores over the stored frame vectors -> per-video timings.

No video file is opened here.
"""

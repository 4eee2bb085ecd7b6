"""A video file's media, turned into what the index keeps: frames decoded by their timestamps
(:mod:`.decode`, in a child process while the model loads: :mod:`.decode_child`; ahead of the
model: :mod:`.prefetch`), pictures made ready for the model (:mod:`.imageprep`), shots (:mod:`.shots`,
:mod:`.transnet`), thumbnails, on-screen text (:mod:`.ocr`) and the time each stage took
(:mod:`.timing`). Nothing here writes to a store or loads CLIP."""

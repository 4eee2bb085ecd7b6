"""An index run: find the files (:mod:`.discover`), decide what to do (:mod:`.plan`,
:mod:`.options`), map the per-video step (:mod:`.embed`: file -> record) over them in this process
(:mod:`.pipeline`) or on Ray (:mod:`.ray_runner`), hand finished videos to the single writer
(:mod:`.commit`), add what older videos lack (:mod:`.backfill`) and report (:mod:`.report`)."""

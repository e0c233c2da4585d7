"""On a GPU: the probe's work recorded as CUDA graphs (:mod:`.graphs`) and
its small results brought to the host in one copy (:mod:`.transfer`).

Used by the orchestrator around the capture and reduce stages; on the CPU
both reduce to plain calls.
"""

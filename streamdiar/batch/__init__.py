"""Archives of audio files diarized as one resumable job: `streamdiar batch`.

The inputs become a list of files (`inputs`), each with the outputs it owes (`outputs`); a
file whose outputs all exist is done, so a rerun does what is left. Workers that hold the
models (`worker`) run on local processes (`local_pool`) or as Ray actors (`ray_pool`), both
with the same retries (`retries`); `job` hands them the files, largest first, and appends a
row per finished file to the results table (`results`).

Nothing here imports torch at import time: worker processes limit their threads first.
"""

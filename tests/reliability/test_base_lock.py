"""Two runs that need the same missing base: the second waits for the first's lock and then
loads what it exported, instead of pretraining into the same folder beside it."""

from __future__ import annotations

import shutil
import threading
import time

from experiments.folder_lock import folder_lock
from experiments.prepare import (
    base_folder,
    is_pretrained_folder,
    prepare_base_model,
    prepare_stream,
)


def test_a_run_waits_for_the_base_another_process_is_building(
    tiny_config, pretrained_ci, capsys
) -> None:
    config = tiny_config("default", {"model.pretrained": None})
    info = prepare_stream(config, progress=False)
    folder = base_folder(config, info)
    result: dict = {}

    def second_run() -> None:
        result["out"] = prepare_base_model(config, info, progress=False)

    with folder_lock(folder):  # the "first process", mid-pretraining
        waiter = threading.Thread(target=second_run, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 60
        err = ""
        while "is being built by process" not in err:  # the second run is waiting on the lock
            assert time.monotonic() < deadline, "the second run never waited"
            time.sleep(0.1)
            err += capsys.readouterr().err
        time.sleep(0.5)
        assert waiter.is_alive() and not is_pretrained_folder(folder)
        assert not folder.with_name(folder.name + ".train").exists()
        shutil.copytree(pretrained_ci, folder)  # what the first process exports
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    model, _, loaded_from = result["out"]
    assert loaded_from == folder and model.vocab_size > 0
    # the waiting run did not pretrain a base of its own
    assert not folder.with_name(folder.name + ".train").exists()


def test_the_lock_names_its_holder_and_is_free_again_after(tmp_path) -> None:
    folder = tmp_path / "base" / "small-abc"
    seen: list[str] = []
    with folder_lock(folder):
        done = threading.Event()

        def other() -> None:
            with folder_lock(folder, on_busy=seen.append):
                done.set()

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert not done.is_set()
    thread.join(timeout=10)
    assert done.is_set() and seen and seen[0].isdigit()

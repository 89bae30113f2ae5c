"""A stand-in for `harness.run.make_item_worker` in the RayItemPool tests (a module of its own:
Ray pickles the factory by name, so its workers must be able to import it).

Rows are a deterministic function of the item, like the harness's; each row also says
which process built the worker and when it finished, so the tests can see that every
actor built it once and that rows finishing out of order come back in order. `fail_on`
(an item id) and `fail_build` (a model name) make it fail like a broken item or model.
"""

import os
import time


def make_item_worker(spec: dict):
    if spec.get("fail_build"):
        raise ValueError(f"cannot load {spec['fail_build']}")
    built = time.time_ns()

    def work(item):
        if item.id == spec.get("fail_on"):
            raise ValueError(f"cannot score {item.id}")
        time.sleep(spec["slow"] if item.id in spec["slow_items"] else 0.0)
        row = {"item_id": item.id, "answer": item.answer, "value": len(item.question) * spec["scale"]}
        return {**row, "worker": (os.getpid(), built), "finished": time.time_ns()}

    return work

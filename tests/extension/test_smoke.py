import json


async def test_run_simple(jp_fetch, jp_root_dir):
    r = await jp_fetch("api", "executions", method="POST", body="notebook=simple.ipynb&a=5",
                       headers={"X-Response-Encoding": "chunked"})
    assert r.code == 202
    lines = [json.loads(line) for line in r.body.decode().splitlines()]
    print([e["event"] for e in lines])
    print(lines[-1])
    assert lines[-1]["event"] == "notebook_complete"

"""The bare FastAPI endpoint bench/gateway.py measures the gateway against: same framework and
server, a JSON body in and out, nothing else."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    task_id: str | None = None
    keyword: str


@app.post("/bare")
async def bare(body: Body):
    return {"status": "accepted", "task_id": body.task_id}

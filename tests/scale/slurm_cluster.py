"""A throwaway single-node Slurm cluster on 127.0.0.1 for the tests: munged, slurmctld and
slurmd from Debian's ``slurm-wlm``/``munge`` in the foreground, with their config, key, state
and logs in one temporary folder (no systemd, no cgroups: ``proctrack/linuxproc``,
``task/none``, no accounting storage)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.scale.conftest import free_port

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def slurm_available() -> bool:
    """True when every program of :data:`PROGRAMS` is on PATH (scripts/setup.sh installs them)."""
    return all(shutil.which(p) for p in PROGRAMS) and os.geteuid() == 0


CONF = """ClusterName=clssvdo
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@dataclass
class SlurmCluster:
    root: Path
    partition: str = "debug"
    processes: list[subprocess.Popen] = field(default_factory=list)
    previous_conf: str | None = None

    def log_tail(self) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.is_file():
                out.append(f"--- {name}\n" + path.read_text()[-1500:])
        return "\n".join(out)

    def skip_requeue_delay(self, job_id: str, timeout: float = 120) -> None:
        """Slurm makes a requeued job wait ~2 minutes (``Reason=BeginTime``): start it now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                                  text=True).stdout  # fmt: skip
            if "Restarts=0" not in info and "Reason=BeginTime" in info:
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                               check=True, capture_output=True)  # fmt: skip
                return
            if (
                "JobState=COMPLETED" in info
                or "JobState=RUNNING" in info
                and "Restarts=0" not in info
            ):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        # Cancel what still runs first: job steps (slurmstepd) outlive slurmd otherwise.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", "--full", "--partition", self.partition],
                           env={**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")},
                           capture_output=True, timeout=30)  # fmt: skip
            time.sleep(2)
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.previous_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self.previous_conf
        shutil.rmtree(self.root, ignore_errors=True)


def start_slurm(timeout: float = 120) -> SlurmCluster:
    """Start munged, slurmctld and slurmd; sets ``SLURM_CONF`` for this process and its
    children (sbatch, squeue, submitit) until :meth:`SlurmCluster.stop`."""
    root = Path(tempfile.mkdtemp(prefix="cl-ssvdo-slurm-"))
    root.chmod(0o755)
    cluster = SlurmCluster(root, previous_conf=os.environ.get("SLURM_CONF"))
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(root=root, ctld_port=free_port(), d_port=free_port(),
                                cpus=os.cpu_count() or 1, partition=cluster.partition))  # fmt: skip
    os.environ["SLURM_CONF"] = str(conf)
    try:
        cluster.processes.append(subprocess.Popen(
            ["munged", "-F", "--force", f"--key-file={key}", f"--socket={root}/munge.sock",
             f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
             f"--seed-file={root}/munged.seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))  # fmt: skip
        time.sleep(1)
        cluster.processes.append(subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))  # fmt: skip
        cluster.processes.append(subprocess.Popen(
            ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in cluster.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode})")
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mix", "alloc"):
                return cluster
            time.sleep(1)
        raise TimeoutError("the Slurm node did not become idle")
    except BaseException as exc:
        logs = cluster.log_tail()
        cluster.stop()
        raise RuntimeError(f"single-node Slurm did not start: {exc}\n{logs}") from exc

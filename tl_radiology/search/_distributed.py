"""Search beyond one process: keras-tuner's chief / worker mode, and ``tf.distribute`` strategies.

keras-tuner coordinates a distributed search through three environment variables read when a tuner is built
and while it searches: ``KERASTUNER_TUNER_ID`` (``"chief"`` for the oracle process, a unique id per worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief's gRPC service listens). The chief holds
the one oracle: it hands out hyperparameters, records every trial and writes the project; the workers train.
:class:`DistributedConfig` sets those variables for the duration of one ``run_search`` / ``feature_search`` call
(and restores the previous values after), or is read from them when they are already set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from concurrent import futures

from .._errors import InputError
from .._options import look_up_option

__all__ = ["DistributedConfig", "resolve_distributed", "distributed_environment", "serve_oracle", "resolve_strategy"]

_ENV_ID, _ENV_IP, _ENV_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
ROLES = ("chief", "worker")


def _parse_address(address) -> tuple[str, int]:
    if not isinstance(address, str) or ":" not in address:
        raise InputError(
            f"Expected oracle_address to be 'host:port' (e.g. '127.0.0.1:8000'); received {address!r}."
        )
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")  # '[::1]:8000'
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 1 <= port <= 65535:
        raise InputError(
            f"Expected oracle_address to be 'host:port' with a port from 1 to 65535 (e.g. '127.0.0.1:8000'); "
            f"received {address!r}."
        )
    return host, port


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Where this process stands in a keras-tuner distributed search: the chief or one of the workers.

    Start one chief and any number of workers with the same search call (same data, space, objective,
    ``directory`` and ``project_name``); only ``distributed`` differs. The chief serves the oracle at
    ``oracle_address`` and returns when every trial has ended; each worker asks it for trials until the search is
    over. Put ``directory`` on a folder all of them can reach (a shared file system), so the chief's summary
    also carries the workers' error messages and timings.

    Args:
        role: ``"chief"`` or ``"worker"``.
        oracle_address: ``"host:port"`` where the chief listens and the workers connect, e.g.
            ``"10.0.0.5:8000"``; ``"127.0.0.1:PORT"`` for processes on one machine.
        tuner_id: this process's id. The chief's is ``"chief"``. A worker needs an id unique in the search and
            without ``"chief"`` in it (keras-tuner takes any id containing ``"chief"`` for the chief); default
            ``"worker-<host>-<pid>"``. Give a worker a stable id (``"worker0"``) so that, restarted with the same
            id after a crash, it is handed back the trial it was running.

    Raises:
        OptionError: an unknown role.
        InputError: a malformed address or a worker id containing ``"chief"``.

    Example:
        >>> DistributedConfig("worker", "127.0.0.1:8000", tuner_id="worker0").environment()
        {'KERASTUNER_TUNER_ID': 'worker0', 'KERASTUNER_ORACLE_IP': '127.0.0.1', 'KERASTUNER_ORACLE_PORT': '8000'}
    """

    role: str
    oracle_address: str = "127.0.0.1:8000"
    tuner_id: str | None = None

    def __post_init__(self):
        role = look_up_option(self.role, ROLES, what="distributed role")
        object.__setattr__(self, "role", role)
        _parse_address(self.oracle_address)
        tuner_id = self.tuner_id
        if tuner_id is not None and (not isinstance(tuner_id, str) or not tuner_id.strip()):
            raise InputError(f"Expected tuner_id to be a non-empty text; received {tuner_id!r}.")
        if role == "chief":
            if tuner_id is not None and "chief" not in tuner_id:
                raise InputError(
                    f"The chief's tuner_id must contain 'chief' (keras-tuner tells the chief by it); received "
                    f"{tuner_id!r}. Leave tuner_id unset for the chief."
                )
            tuner_id = tuner_id or "chief"
        else:
            if tuner_id is not None and "chief" in tuner_id:
                raise InputError(
                    f"A worker's tuner_id must not contain 'chief' (keras-tuner would take it for the chief); "
                    f"received {tuner_id!r}. Use e.g. 'worker0'."
                )
            tuner_id = tuner_id or f"worker-{socket.gethostname()}-{os.getpid()}"
        object.__setattr__(self, "tuner_id", tuner_id)

    @property
    def host(self) -> str:
        """The chief's host (name or IP address)."""
        return _parse_address(self.oracle_address)[0]

    @property
    def port(self) -> int:
        """The chief's port."""
        return _parse_address(self.oracle_address)[1]

    @property
    def is_chief(self) -> bool:
        return self.role == "chief"

    def environment(self) -> dict[str, str]:
        """The three keras-tuner environment variables this configuration stands for."""
        return {_ENV_ID: self.tuner_id, _ENV_IP: self.host, _ENV_PORT: str(self.port)}

    @classmethod
    def from_environment(cls) -> "DistributedConfig | None":
        """The configuration given by the environment variables, or ``None`` when ``KERASTUNER_ORACLE_IP`` is unset.

        Raises:
            InputError: ``KERASTUNER_ORACLE_IP`` is set without ``KERASTUNER_ORACLE_PORT`` or
                ``KERASTUNER_TUNER_ID``.
        """
        ip = os.environ.get(_ENV_IP)
        if not ip:
            return None
        missing = [name for name in (_ENV_PORT, _ENV_ID) if not os.environ.get(name)]
        if missing:
            raise InputError(
                f"{_ENV_IP} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not. Set all "
                f"three ({_ENV_ID}, {_ENV_IP}, {_ENV_PORT}), or unset {_ENV_IP} for a search in one process."
            )
        tuner_id = os.environ[_ENV_ID]
        role = "chief" if "chief" in tuner_id else "worker"
        return cls(role, f"{ip}:{os.environ[_ENV_PORT]}", tuner_id=tuner_id)

    def to_dict(self) -> dict:
        return {"role": self.role, "oracle_address": self.oracle_address, "tuner_id": self.tuner_id}


def resolve_distributed(distributed) -> DistributedConfig | None:
    """``distributed`` as given (a :class:`DistributedConfig` or ``None``); ``None`` falls back to the environment."""
    if distributed is None:
        return DistributedConfig.from_environment()
    if isinstance(distributed, DistributedConfig):
        return distributed
    raise InputError(
        f"Expected distributed to be a DistributedConfig(role, oracle_address, tuner_id) or None; received "
        f"{type(distributed).__name__}."
    )


@contextlib.contextmanager
def distributed_environment(config: DistributedConfig | None):
    """Set keras-tuner's variables for ``config`` (or clear them for ``None``) and restore them afterwards."""
    names = (_ENV_ID, _ENV_IP, _ENV_PORT)
    saved = {name: os.environ.get(name) for name in names}
    wanted = config.environment() if config is not None else {}
    try:
        for name in names:
            if name in wanted:
                os.environ[name] = wanted[name]
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def serve_oracle(oracle, config: DistributedConfig, *, poll_seconds: float = 0.2) -> None:
    """Serve ``oracle`` to the workers at ``config.oracle_address`` until the search is over, then stop.

    keras-tuner's own chief loop checks every 20 seconds whether the last worker has left and never stops its
    server; this one uses keras-tuner's gRPC servicer unchanged, checks every ``poll_seconds`` and shuts the
    server down, so a finished chief returns promptly and frees its port.

    Raises:
        InputError: the address cannot be listened on (port in use, or not an address of this machine).
    """
    import grpc  # deferred: gRPC and keras-tuner's chief, only for a distributed search
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    # No SO_REUSEPORT: a second chief on the same port must fail here rather than share the port with the first.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=[("grpc.so_reuseport", 0)])
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{config.host}:{config.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise InputError(
            f"The search chief cannot listen on oracle_address {config.oracle_address}: the port is in use or the "
            "host is not an address of this machine. Choose a free port (and the same one for every worker)."
        )
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1.0).wait()


STRATEGIES = ("mirrored",)


def resolve_strategy(strategy):
    """``None``, a ``tf.distribute.Strategy``, or ``"mirrored"`` (``MirroredStrategy`` over every local GPU, or
    the CPU when there is none)."""
    if strategy is None:
        return None
    if isinstance(strategy, str):
        look_up_option(strategy, STRATEGIES, what="strategy",
                       fix="Or pass a tf.distribute.Strategy instance.")
        import tensorflow as tf  # deferred: TensorFlow, only for a strategy

        return tf.distribute.MirroredStrategy()
    import tensorflow as tf  # deferred: TensorFlow, only for a strategy

    if not isinstance(strategy, tf.distribute.Strategy):
        raise InputError(
            f"Expected strategy to be None, 'mirrored' or a tf.distribute.Strategy; received "
            f"{type(strategy).__name__}."
        )
    return strategy

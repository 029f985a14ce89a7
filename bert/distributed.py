"""Data parallelism: the few collective operations the training loop needs, over Horovod or tf.distribute.

The loop is written once against `Replicas`: `rank` and `size`, a sum across ranks of a list of
tensors, a broadcast of variables from rank 0, and a barrier. `Single` is one process; `HorovodReplicas`
runs under `horovodrun` (Gloo, MPI, NCCL or RCCL); `MirroredWorkers` uses TensorFlow's own collectives
(`tf.distribute.MultiWorkerMirroredStrategy`, one process per worker, the cluster in TF_CONFIG) for
those without Horovod. Each process keeps plain `tf.Variable`s and updates them itself from the summed
gradients, so every engine gives the same update.
"""

import functools
import hashlib
import json
import os
import signal
import sys
import threading

from bert.errors import InputError
from bert.fileio import restore_signal_handlers, unignored
from bert.tf import tf

STRATEGIES = ("none", "horovod", "multi_worker_mirrored")


LOST_CONTACT = ("lost contact with another worker: its own output says why it stopped; run the same command again "
                "on every worker to resume from the newest checkpoint")


def _collective(method):
    """Makes a collective that fails because another process of the run has ended raise one line instead."""

    @functools.wraps(method)
    def run(self, *args):
        try:
            return method(self, *args)
        except tf.errors.OpError as e:
            lost = self.lost_contact(e)
            if lost is None:
                raise
            raise lost from None

    return run


class Single:
    rank = 0
    size = 1
    name = "single process"

    def lost_contact(self, error):
        return None

    def all_sum(self, tensors):
        return list(tensors)

    def broadcast(self, variables):
        pass

    def barrier(self):
        pass


class HorovodReplicas:
    def __init__(self):
        try:
            import horovod.tensorflow as hvd
        except ImportError as e:
            raise InputError(
                f"--use_horovod: Horovod is not installed ({e}); run bin/setup --with-horovod"
            ) from None
        hvd.init()
        self._hvd = hvd
        self.rank, self.size, self.local_rank, self.local_size = hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size()
        self.name = f"Horovod, {self.size} ranks"

    def lost_contact(self, error):
        """The error to raise for a collective's `error` if another rank has ended, else None."""
        # A rank that exits shuts Horovod down on every rank, and the others' next collective fails so.
        return InputError(LOST_CONTACT) if "Horovod has been shut down" in str(error) else None

    @_collective
    def all_sum(self, tensors):
        return self._hvd.grouped_allreduce(list(tensors), op=self._hvd.Sum)

    @_collective
    def broadcast(self, variables):
        self._hvd.broadcast_variables(list(variables), root_rank=0)

    @_collective
    def barrier(self):
        self._hvd.allreduce(tf.constant(0.0), op=self._hvd.Sum, name="barrier")


def cluster_position(cluster, task_type, task_id):
    """(rank, local rank, local size) of a task in a TF_CONFIG cluster ({"chief": [...], "worker": ["host:port", ...]}).

    Ranks follow TensorFlow's collectives: the chief first, then the workers in order. The local rank counts
    the tasks before it on the same host, so that each process on a machine takes a GPU of its own; the local
    size counts the tasks on that host.
    """
    if task_type not in ("chief", "worker"):
        raise InputError(f"TF_CONFIG: task type {task_type!r} does not train; use chief or worker")
    tasks = [(kind, index, address) for kind in ("chief", "worker")
             for index, address in sorted(_addresses(cluster.get(kind, [])).items())]
    position = next((i for i, (kind, index, _) in enumerate(tasks) if (kind, index) == (task_type, task_id)), None)
    if position is None:
        raise InputError(f"TF_CONFIG: task {task_type} {task_id} is not in its cluster")
    hosts = [address.rsplit(":", 1)[0] for _, _, address in tasks]
    return position, hosts[:position].count(hosts[position]), hosts.count(hosts[position])


def _addresses(tasks):
    return dict(tasks) if isinstance(tasks, dict) else dict(enumerate(tasks))


def _check_tf_config(tf_config):
    """Raises InputError naming what is wrong where TF_CONFIG's cluster or task is not of the shape TensorFlow reads
    (it would fail with a traceback): {"cluster": {kind: ["host:port", ...]}, "task": {"type": kind, "index": n}}."""
    cluster = tf_config.get("cluster", {})
    if not isinstance(cluster, dict):
        raise InputError(f"TF_CONFIG: its cluster must be an object of lists of \"host:port\" strings, got "
                         f"{json.dumps(cluster)}")
    for kind, tasks in cluster.items():
        addresses = list(tasks.values()) if isinstance(tasks, dict) else tasks
        if not (isinstance(addresses, list) and all(isinstance(address, str) for address in addresses)):
            raise InputError(f"TF_CONFIG: its cluster's {kind!r} must be a list of \"host:port\" strings, got "
                             f"{json.dumps(tasks)}")
    task = tf_config["task"]
    if not isinstance(task.get("type"), str):
        raise InputError(f"TF_CONFIG: its task's type must be a string (worker or chief), got {json.dumps(task.get('type'))}")
    index = task.get("index", 0)
    if not (isinstance(index, int) and not isinstance(index, bool) or isinstance(index, str) and index.isdigit()):
        raise InputError(f"TF_CONFIG: its task's index must be a whole number, got {json.dumps(index)}")


# The most bytes of variables one collective of MirroredWorkers.broadcast sends.
BROADCAST_GROUP_BYTES = 256 << 20


def byte_groups(variables, limit):
    """`variables` in order, in consecutive groups of one dtype and at most `limit` bytes (a larger variable alone)."""
    groups, size = [], 0
    for variable in variables:
        nbytes = variable.shape.num_elements() * variable.dtype.size
        if not groups or size + nbytes > limit or variable.dtype != groups[-1][-1].dtype:
            groups.append([])
            size = 0
        groups[-1].append(variable)
        size += nbytes
    return groups


class MirroredWorkers:
    def __init__(self):
        text = os.environ.get("TF_CONFIG", "")
        try:
            tf_config = json.loads(text) if text.strip() else {}
        except ValueError as e:
            raise InputError(f"TF_CONFIG: not valid JSON ({e})") from None
        # Without a task TensorFlow trains this process alone, and several started so would meet in --output_dir.
        if not (isinstance(tf_config, dict) and isinstance(tf_config.get("task"), dict)):
            raise InputError('--distribution_strategy=multi_worker_mirrored: TF_CONFIG names no cluster and task; set '
                             'it for each worker, e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                             '"task": {"type": "worker", "index": 0}}')
        _check_tf_config(tf_config)
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        self.rank, self.local_rank, self.local_size = cluster_position(
            resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id)
        # The strategy starts TensorFlow's runtime, after which the visible devices are fixed; it would otherwise
        # take every GPU of the machine as a replica of this process.
        own_gpu = use_one_gpu(self.local_rank, self.local_size)
        self._strategy = _joined_cluster(resolver, communication_options(own_gpu))
        self.size = self._strategy.num_replicas_in_sync
        self.name = f"MultiWorkerMirroredStrategy, {self.size} workers"
        # For the broadcast's groups, of any length: traced for a first length, then for any, per dtype.
        self._sum_vector = tf.function(lambda vector: self._all_sum([vector])[0], autograph=False, reduce_retracing=True)
        # Eager sums (the barriers, the checks before training): one function, not one traced anew each call.
        self._eager_all_sum = tf.function(self._all_sum, autograph=False, reduce_retracing=True)

    def lost_contact(self, error):
        """The error to raise for a collective's `error` if another worker has ended, else None."""
        return InputError(LOST_CONTACT) if isinstance(error, tf.errors.UnavailableError) else None

    @_collective
    def all_sum(self, tensors):
        if tf.executing_eagerly():  # eager collectives are slow and warn; one small function instead
            return self._eager_all_sum(list(tensors))
        return self._all_sum(tensors)

    def _all_sum(self, tensors):
        def reduce(*values):
            # Without the identity, tensors from outside the replica function have no device and the
            # collective finds no destination to reduce to.
            values = [tf.identity(v) for v in values]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

        summed = self._strategy.run(reduce, args=tuple(tensors))
        return [self._strategy.experimental_local_results(t)[0] for t in summed]

    @_collective
    def broadcast(self, variables):
        # Rank 0's values plus the others' zeros: exact (but for the sign of a zero) in a floating variable's
        # own dtype, and in float64 for the integer counters. A group of variables at a time, packed into one
        # vector, so that a large model's weights and optimizer slots are not all copied at once.
        for group in byte_groups(list(variables), BROADCAST_GROUP_BYTES):
            wire = group[0].dtype if group[0].dtype.is_floating else tf.float64
            sizes = [v.shape.num_elements() for v in group]
            if self.rank == 0:
                packed = tf.concat([tf.reshape(tf.cast(v, wire), [-1]) for v in group], 0)
            else:
                packed = tf.zeros([sum(sizes)], wire)
            summed = self._sum_vector(packed)
            for variable, value in zip(group, tf.split(summed, sizes)):
                variable.assign(tf.cast(tf.reshape(value, variable.shape), variable.dtype))

    def barrier(self):
        self.all_sum([tf.constant(0.0)])


def _joined_cluster(resolver, options):
    """The MultiWorkerMirroredStrategy of `resolver`'s cluster, communicating as `options` say, once every worker
    of it has started.

    TensorFlow waits for them (up to an hour) inside one call that does not return to Python, so Python's
    handler of Ctrl-C would not run: until they have, Ctrl-C ends this process at once, before it has written
    anything. TensorFlow also takes SIGTERM over for preemption notices, which this program does not use:
    whatever handled it before (the default: ending the process) does again once the cluster is joined.
    Signal handlers belong to the main thread: elsewhere they are left as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
    for number in unignored(signal.SIGINT):
        previous[number] = signal.signal(number, signal.SIG_DFL)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    finally:
        restore_signal_handlers(previous)


def communication_options(own_gpu):
    """NCCL (RCCL on ROCm) for a worker computing on a GPU of its own (NCCL refuses two ranks on one GPU):
    TensorFlow's own choice there is its ring over gRPC, through host memory, for every step's gradients."""
    implementation = tf.distribute.experimental.CommunicationImplementation
    return tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if own_gpu else implementation.AUTO)


def differing_across_ranks(replicas, values):
    """The names of `values` ({name: JSON-able value}) whose value on some rank is not rank 0's, the same on every
    rank (so that every rank stops, or none); None where the ranks do not even name the same values."""
    if replicas.size == 1:
        return []
    names = sorted(values)
    if _differs_from_chief(replicas, [_hash(names)])[0]:
        return None
    return [name for name, differs in zip(names, _differs_from_chief(replicas, [_hash(values[n]) for n in names])) if differs]


def _hash(value):
    # 56 bits: rank 0's hashes summed with the other ranks' zeros stay within an int64.
    return int.from_bytes(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()[:7], "big")


def _differs_from_chief(replicas, hashes):
    own = tf.constant(hashes, tf.int64)
    chief = replicas.all_sum([own if replicas.rank == 0 else tf.zeros_like(own)])[0]
    return replicas.all_sum([tf.cast(tf.not_equal(own, chief), tf.int64)])[0].numpy() > 0


def make_replicas(strategy):
    """The `Replicas` for --distribution_strategy (or --use_horovod)."""
    if strategy == "horovod":
        replicas = HorovodReplicas()
        use_one_gpu(replicas.local_rank, replicas.local_size)
        return replicas
    if strategy == "multi_worker_mirrored":
        return MirroredWorkers()
    return Single()


def use_one_gpu(local_rank, local_size):
    """Shows this process one GPU, its machine's `local_rank`-th of the `local_size` processes there, before
    TensorFlow's runtime starts; where there are fewer GPUs than processes, it takes GPU memory as it needs it.
    Returns whether the process computes on a GPU of its own (False on a CPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    gpu = gpus[local_rank % len(gpus)]
    tf.config.set_visible_devices(gpu, "GPU")
    warning = gpu_use_warning(local_rank, local_size, len(gpus), os.environ)
    if warning:
        print(warning, file=sys.stderr)
    if local_size <= len(gpus):
        return True
    # TensorFlow takes nearly all of a GPU's memory up front, which would leave none to the processes sharing it.
    tf.config.experimental.set_memory_growth(gpu, True)
    return _given_a_gpu_of_its_own(len(gpus), os.environ)


# What a launcher (Slurm's --gpus-per-task, Kubernetes, a scheduler's wrapper) sets to show each process its own GPU.
_VISIBLE_DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def _given_a_gpu_of_its_own(gpu_count, environ):
    """Whether the process sees one GPU because a visible-device variable in `environ` names one device."""
    assigned = [environ[name] for name in _VISIBLE_DEVICE_VARIABLES if environ.get(name, "").strip()]
    return gpu_count == 1 and any("," not in devices for devices in assigned)


def gpu_use_warning(local_rank, local_size, gpu_count, environ):
    """A warning when the processes on a machine do not match its GPUs one to one: the process of `local_rank`
    shares a GPU with another, or (said once, by local rank 0) some GPUs are left idle. None where the launcher
    gave the process one GPU of its own (a visible-device variable in `environ` names one device)."""
    if _given_a_gpu_of_its_own(gpu_count, environ):
        return None
    if local_rank >= gpu_count:
        return (f"warning: local rank {local_rank} shares GPU {local_rank % gpu_count} with another process: this "
                f"machine has {gpu_count} GPU(s); start one process per GPU")
    if local_rank == 0 and local_size < gpu_count:
        return (f"warning: {local_size} process(es) on this machine use {local_size} of its {gpu_count} GPUs, one "
                f"each; start one process per GPU")
    return None

"""The xbench plugin API: register-style pluggy hooks.

A plugin is a module exposed through the ``xbench`` entry-point group::

    [project.entry-points.xbench]
    mymethod = "mypackage.plugin"

and implements any of the hooks below with ``@xbench.hookimpl``. Each hook receives a ``register``
callable; call it once per spec. Specs (``xbench.specs``) hold factories, so registering is cheap.
xbench calls each plugin's hook separately, so every registered name knows the plugin that owns it;
registering a name another plugin already owns is an error naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from xbench.specs import DatasetSpec, LossSpec, MethodSpec, StudentSpec, TaskSpec, TeacherSpec

PROJECT = "xbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def xbench_register_teachers(register: Callable[[TeacherSpec], None]) -> None:
    """Register teacher architectures with ``register(TeacherSpec(...))``.

    A teacher reads privileged modalities (audio, flow, pose, text) at train time only. The harness
    trains it in the ``teacher`` stage on the dataset's teacher split (so the soft targets a student
    learns from come from clips the teacher never trained on), then freezes it: eval mode, inference
    mode, parameters checked unchanged.
    """


@hookspec
def xbench_register_students(register: Callable[[StudentSpec], None]) -> None:
    """Register student architectures with ``register(StudentSpec(...))``.

    The task, not the method, chooses the student, so every method in a comparison trains the same
    architecture from the same initialisation.
    """


@hookspec
def xbench_register_losses(register: Callable[[LossSpec], None]) -> None:
    """Register loss terms with ``register(LossSpec(...))``. Methods compose them by name."""


@hookspec
def xbench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets with ``register(DatasetSpec(...))``. Data is read from local files only."""


@hookspec
def xbench_register_tasks(register: Callable[[TaskSpec], None]) -> None:
    """Register tasks with ``register(TaskSpec(...))``: examples, student, default teacher, metrics."""


@hookspec
def xbench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register distillation methods with ``register(MethodSpec(...))``.

    A method supplies loss terms (and through them extra trainable heads), its teacher choice and
    lr multipliers for its own heads; a method that needs more (EMA teachers, masked views, a
    module routing its own gradients, a modality read at train time) gives an ``objective``
    module, and a self-supervised one sets ``labels=False`` (see :class:`MethodSpec`). It cannot
    change the student, the data order, the optimizer or the budget: the harness owns those.
    """

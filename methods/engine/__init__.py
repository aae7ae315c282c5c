"""The engine every method runs on, with Ray Train or without it.

    registry.py   register / get_method / train_loop / run_local / load_trained: the one place a run opens
    config.py     run keys, hyperparameter dataclasses (HParams parts), make_hparams
    run.py        Run (device, rank, checkpoint, reporting) and its Session (Ray Train's or this process's)
    loop.py       Step (a method's training state) and fit, the one training loop; adopt
    batches.py    seeded batch streams (Stream)
    rng.py        seeds and RNG states
    evaluate.py   the shared evaluator (Prediction, sliding windows, scores)
    uda_data.py   a run's datasets (UDAData)
    pictures.py   the final evaluation's pictures
    artifacts.py  what many trials share, built once
    provenance.py what a result depends on

Reproducibility contract: a run is a pure function of (config, seed). Every sample is loaded
under a seed derived from (seed, stream, iteration, slot), every epoch's order from (seed,
stream, epoch), and checkpoints carry every worker's RNG states, so a run resumed from the
checkpoint at iteration k sees exactly the batches and draws an uninterrupted run sees from k on.

What a method file imports from the engine is re-exported here.
"""
from udalab.methods.engine.batches import Stream
from udalab.methods.engine.config import ConfigError, HParams, fields_of
from udalab.methods.engine.evaluate import Prediction, evaluate
from udalab.methods.engine.loop import NonFiniteLossError, Step, adopt, autocast, eval_mode, fit, unwrap
from udalab.methods.engine.registry import Method, register
from udalab.methods.engine.rng import derive_seed, rng_preserved
from udalab.methods.engine.run import Run
from udalab.methods.engine.uda_data import UDAData

__all__ = ["ConfigError", "HParams", "Method", "NonFiniteLossError", "Prediction", "Run", "Step", "Stream", "UDAData",
           "adopt", "autocast", "derive_seed", "eval_mode", "evaluate", "fields_of", "fit", "register",
           "rng_preserved", "unwrap"]

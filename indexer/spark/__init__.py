"""Indexing on Apache Spark: the only package that imports pyspark.

``images`` (``index --engine spark``: the embed job, its tasks in ``tasks``, the shards written by
executors in ``shards``), ``vectors`` (``index-vectors --engine spark``), both over ``ids`` (the ledger's
rules as DataFrame steps) and ``groups`` (one Spark partition per shard); ``fill`` (an on-disk index's
partial indexes, its training, merge and tuning on executors); ``heads`` (a head trained by Spark MLlib).
"""

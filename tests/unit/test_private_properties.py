"""Settings that carry secrets reach a JVM in a file only this user can read, removed after."""

from __future__ import annotations

import stat

from clickstream_pipeline.core.spark import private_properties_file


def test_the_file_is_private_escaped_and_gone_after_the_block():
    conf = {"spark.hadoop.fs.azure.account.key.a": "k+/ey==", "odd key:": " a\\b\nc#!"}
    with private_properties_file(conf) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text().splitlines() == [
            "spark.hadoop.fs.azure.account.key.a=k+/ey\\=\\=",
            "odd\\ key\\:=\\ a\\\\b\\nc\\#\\!",
        ]
    assert not path.exists() and not path.parent.exists()

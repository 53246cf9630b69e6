"""bot/heap.py: what is loaded at start is left out of the collector's passes;
what is made after is still collected."""

import gc
import subprocess
import sys
import textwrap


def test_settle_freezes_what_is_loaded_and_still_collects_what_comes_after():
    # In a process of its own: a frozen heap would stay frozen for the rest of the test session.
    script = textwrap.dedent(
        """
        import gc, weakref
        from bot import heap

        class Node:
            pass

        loaded = [Node() for _ in range(1000)]
        kept = heap.settle()
        assert kept >= 1000 and gc.get_freeze_count() == kept
        loop = Node(); loop.me = loop  # garbage in a cycle, made after start
        seen = weakref.ref(loop)
        del loop
        gc.collect()
        assert seen() is None
        assert all(isinstance(node, Node) for node in loaded)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_test_process_itself_is_not_frozen():
    assert gc.get_freeze_count() == 0

"""Audit: the Activity Log of management writes and denied requests (issue #4).

    events.py    Azure's EventData shape, built without I/O
    filter.py    the `$filter` patterns Azure allows
    store.py     the activity_log table
    recorder.py  the hook on ARM dispatch, the data-plane observer, the bounded writer
"""

"""task_x_requests (migrations 012, 016): one row per X request made for a task, written by the
dedup-counter's usage meter (services/dedup_counter/usage.py), read by the gateway's cost API."""

# What identifies a request, for uniqExact: its event id, or for an older scraper's event (no
# id) its place on account-events. Offsets alone are not an identity: a broker restored from
# an older snapshot gives them anew to other requests.
REQUEST_ID = (
    "if(event_id = '', concat(toString(event_partition), '/', toString(event_offset)), event_id)"
)

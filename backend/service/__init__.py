"""The service layer: what the CLI and the UI both do (queue, cancel, requeue, remove, the demo,
form advice, doctor), written once below both. The UI imports nothing beneath this layer but the
schema, the store's read side and the results."""

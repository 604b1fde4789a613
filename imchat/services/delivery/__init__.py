"""Delivery: the bus consumer and what it does with each batch.

``consumer`` polls the bus and commits offsets after each batch;
``records`` assigns seqs, stores pending rows and builds the pushes;
``outbox`` routes them to the gateways holding the recipients' connections.
"""

"""Who makes room when the gateway is full: the oldest idle token-less connection, then the oldest idle one of a
token holder, never a busy one; the per-address cap refuses regardless."""

from __future__ import annotations

from auth_plugin.listener import Book, Limits


class Connection:
    """What the book reads of a Guard."""

    def __init__(self, book: Book, address: str, idle: bool = True) -> None:
        self.book, self.address, self.idle, self.vouched, self.evicted = book, address, idle, False, False
        self.inner = object()

    def evict(self) -> None:
        self.evicted = True
        self.book.release(self)


def test_idle_token_less_connections_make_room_oldest_first_then_token_holders_then_none():
    book = Book(Limits(max_connections=3, max_connections_per_address=2))
    holder, first, second = (Connection(book, address) for address in ("a", "b", "c"))
    for connection in (holder, first, second):
        assert book.admit(connection, connection.address)
    book.vouch(holder.inner)
    newcomer = Connection(book, "d")
    assert book.admit(newcomer, "d") and first.evicted and not holder.evicted  # holder is older, but vouched
    second.idle = newcomer.idle = False  # requests in progress
    assert book.admit(Connection(book, "e", idle=False), "e") and holder.evicted  # only the holder's was idle
    assert not book.admit(Connection(book, "f"), "f")  # every connection busy: refused, none dropped
    assert (book.total, book.evicted, book.refused) == (3, 2, 1)


def test_the_per_address_cap_refuses_even_with_room_to_make():
    book = Book(Limits(max_connections=10, max_connections_per_address=2))
    ours = [Connection(book, "a") for _ in range(2)]
    assert all(book.admit(connection, "a") for connection in ours)
    assert not book.admit(Connection(book, "a"), "a") and not any(connection.evicted for connection in ours)
    book.release(ours[0])
    book.release(ours[0])  # a connection lost after it was evicted is released once only
    assert book.per_address["a"] == 1 and book.admit(Connection(book, "a"), "a")

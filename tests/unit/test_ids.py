from clearhouse import ids


def test_ids_are_prefixed_unique_and_sortable_by_time():
    made = [ids.new_id("pay") for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(i.startswith("pay_") and len(i) == 30 for i in made)


def test_seeded_ids_repeat_and_the_system_source_comes_back():
    def run() -> list[str]:
        with ids.seeded(7, lambda: 1_790_000_000_000):
            return [ids.new_id("att") for _ in range(5)]

    first, second = run(), run()
    assert first == second
    with ids.seeded(8, lambda: 1_790_000_000_000):
        assert ids.new_id("att") != first[0]
    assert ids.new_id("att") not in first  # back to the clock and os.urandom

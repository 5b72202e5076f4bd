-- The catalog: cinemas, auditoriums with their normalised seat layout, GA areas, movies,
-- screenings and their prices.

CREATE TABLE cinemas (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    city text NOT NULL,
    timezone text NOT NULL,
    address text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cinemas_city ON cinemas (lower(city), id);

CREATE TABLE auditoriums (
    id bigserial PRIMARY KEY,
    cinema_id bigint NOT NULL REFERENCES cinemas ON DELETE RESTRICT,
    name text NOT NULL,
    -- The layout as the admin submitted it (compact rows or a seat list), for editing.
    source jsonb NOT NULL,
    -- The normalised layout (seatmap.layouts.Layout) exactly as clients get it: served without
    -- rebuilding it from `seats` on every request. Written together with `seats` and `ga_areas`
    -- in one transaction, and never changed once a screening uses the auditorium.
    layout jsonb NOT NULL,
    categories text[] NOT NULL,
    seat_count integer NOT NULL,
    ga_capacity integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cinema_id, name)
);

-- The normalised layout: what clients render and what holds and tickets refer to.
CREATE TABLE seats (
    id bigserial PRIMARY KEY,
    auditorium_id bigint NOT NULL REFERENCES auditoriums ON DELETE CASCADE,
    label text NOT NULL,
    row_label text NOT NULL,
    number integer NOT NULL,
    x integer NOT NULL,
    y integer NOT NULL,
    category text NOT NULL,
    accessible boolean NOT NULL DEFAULT false,
    companion boolean NOT NULL DEFAULT false,
    UNIQUE (auditorium_id, label)
);

-- General admission: standing capacity sold by quantity, not by seat.
CREATE TABLE ga_areas (
    id bigserial PRIMARY KEY,
    auditorium_id bigint NOT NULL REFERENCES auditoriums ON DELETE CASCADE,
    name text NOT NULL,
    capacity integer NOT NULL CHECK (capacity > 0),
    category text NOT NULL,
    UNIQUE (auditorium_id, name)
);

CREATE TABLE movies (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    kind text NOT NULL DEFAULT 'movie' CHECK (kind IN ('movie', 'event')),
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
    rating text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE screenings (
    id bigserial PRIMARY KEY,
    auditorium_id bigint NOT NULL REFERENCES auditoriums ON DELETE RESTRICT,
    movie_id bigint NOT NULL REFERENCES movies ON DELETE RESTRICT,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('draft', 'scheduled', 'cancelled')),
    currency text NOT NULL DEFAULT 'IDR' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    -- Two live screenings never share an auditorium at the same time. btree_gist is not in
    -- every PostgreSQL build (pgserver lacks it), so the auditorium is a one-point range.
    CONSTRAINT screenings_no_overlap EXCLUDE USING gist (
        int8range(auditorium_id, auditorium_id, '[]') WITH &&,
        tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status <> 'cancelled')
);
CREATE INDEX screenings_starts ON screenings (starts_at, id);
CREATE INDEX screenings_movie ON screenings (movie_id, starts_at);
CREATE INDEX screenings_auditorium ON screenings (auditorium_id, starts_at);

CREATE TABLE screening_prices (
    screening_id bigint NOT NULL REFERENCES screenings ON DELETE CASCADE,
    category text NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (screening_id, category)
);

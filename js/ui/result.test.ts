import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DateDay, Decimal, Field, Float64, Int32, Int64, Interval, IntervalUnit, TimeMicrosecond, TimestampMicrosecond, Utf8 } from "apache-arrow";
import { displayValue, formatDecimal, formatValue, shortType, toTsv } from "./format";

describe("result values", () => {
  it("formats DuckDB decimals exactly, negative and 128-bit included", () => {
    const dec = (scale: number) => new Field("d", new Decimal(scale, 38, 128));
    assert.equal(formatDecimal(new Uint32Array([1234, 0, 0, 0]), dec(2)), "12.34");
    // -12.345 as two's complement
    assert.equal(formatDecimal(new Uint32Array([4294954951, 4294967295, 4294967295, 4294967295]), dec(3)), "-12.345");
    assert.equal(formatDecimal(new Uint32Array([5, 0, 0, 0]), dec(3)), "0.005");
    assert.equal(
      formatDecimal(new Uint32Array([4294967295, 4294967295, 4294967295, 2147483647]), dec(0)),
      "170141183460469231731687303715884105727",
    );
    assert.equal(formatDecimal(null, dec(2)), null);
  });

  it("formats dates, timestamps, times, intervals, big integers and nulls", () => {
    assert.equal(formatValue(1709251200000, new Field("d", new DateDay())), "2024-03-01");
    assert.equal(formatValue(1709296496000, new Field("t", new TimestampMicrosecond())), "2024-03-01 12:34:56");
    assert.equal(formatValue(43201500000n, new Field("t", new TimeMicrosecond())), "12:00:01.5");
    assert.equal(formatValue(new Int32Array([0, 3, 0, 0]), new Field("i", new Interval(IntervalUnit.MONTH_DAY_NANO))), "3 days");
    assert.equal(formatValue(2n ** 62n), "4611686018427387904");
    assert.equal(formatValue(null, new Field("x", new Int32())), null);
    assert.equal(formatValue(undefined), null);
    assert.equal(formatValue("x".repeat(600), new Field("s", new Utf8()))?.length, 600);
    assert.equal(displayValue("x".repeat(600), new Field("s", new Utf8()))?.length, 501);
    assert.equal(formatValue(true), "true");
    assert.equal(formatValue(0.1 + 0.2), "0.3");
    assert.equal(formatValue({ toJSON: () => ({ a: 1n }) }), '{"a":"1"}');
  });

  it("groups integers from 10,000, keeps years plain and rounds floats for display", () => {
    const int = new Field("i", new Int32());
    const big = new Field("b", new Int64());
    const float = new Field("f", new Float64());
    assert.equal(displayValue(2013, int), "2013");
    assert.equal(displayValue(336776, int), "336,776");
    assert.equal(displayValue(-27004n, big), "-27,004");
    assert.equal(displayValue(999n, big), "999");
    assert.equal(displayValue(12.539123456, float), "12.53912");
    assert.equal(displayValue(1234567.891, float), "1,234,568");
    assert.equal(displayValue(0.000012345, float), "1.2345e-5");
    assert.equal(displayValue(3, float), "3");
    assert.equal(displayValue(Number.NaN, float), "NaN");
    assert.equal(displayValue(null, float), null);
    assert.equal(formatValue(12.539123456, float), "12.539123456", "copying keeps the exact value");
    const dec = new Field("d", new Decimal(2, 18, 128));
    assert.equal(displayValue(new Uint32Array([123456789, 0, 0, 0]), dec), "1,234,567.89");
    assert.equal(formatValue(new Uint32Array([123456789, 0, 0, 0]), dec), "1234567.89");
  });

  it("shortens header types and writes rows as TSV", () => {
    assert.equal(shortType("TIMESTAMP WITH TIME ZONE"), "timestamptz");
    assert.equal(shortType("DECIMAL(18,2)"), "decimal(18,2)");
    assert.equal(toTsv([["a", null, "b\tc"], ["1", "2", "x\ny"]]), "a\t\tb c\n1\t2\tx y");
  });
});

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace TauCluster.Engine.Tests;

public sealed class NumPyFileTests
{
    /// <summary>
    /// Writes a .npy file the way numpy.save does: magic, version, header length, the dict literal padded with spaces
    /// and a newline so the data starts at a multiple of 64 bytes, then the raw data.
    /// </summary>
    internal static string WriteNpy(string path, string descr, string shape, ReadOnlySpan<byte> data, bool fortranOrder = false, int major = 1)
    {
        string dict = $"{{'descr': '{descr}', 'fortran_order': {(fortranOrder ? "True" : "False")}, 'shape': {shape}, }}";
        int prefix = major == 1 ? 10 : 12;
        int padded = (prefix + dict.Length + 1 + 63) / 64 * 64 - prefix;
        var header = Encoding.ASCII.GetBytes(dict.PadRight(padded - 1) + "\n");
        using var file = File.Create(path);
        file.Write([0x93, .. "NUMPY"u8, (byte)major, 0]);
        Span<byte> length = stackalloc byte[4];
        if (major == 1) { BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length); file.Write(length[..2]); }
        else { BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)header.Length); file.Write(length); }
        file.Write(header);
        file.Write(data);
        return path;
    }

    internal static string WriteFloat32Npy(string path, float[] values, int rows, int columns) =>
        WriteNpy(path, "<f4", $"({rows}, {columns})", MemoryMarshal.AsBytes(values.AsSpan()));

    private static float[] Float32Samples(int count) =>
        [.. Enumerable.Range(0, count).Select(i => i switch
        {
            0 => float.Epsilon, 1 => -0.0f, 2 => float.MaxValue, 3 => 1f / 3, _ => (float)Math.Sin(i) * 1e-3f * i,
        })];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Float32_file_reads_back_bit_for_bit_in_every_format_version(int major)
    {
        var values = Float32Samples(12);
        var path = WriteNpy(Path.Combine(TestSupport.TempDirectory(), "a.npy"), "<f4", "(3, 4)", MemoryMarshal.AsBytes(values.AsSpan()), major: major);
        var (data, rows, columns) = NumPyFile.ReadFloat32Matrix(path);
        Assert.Equal((3, 4), (rows, columns));
        Assert.Equal(values.Select(BitConverter.SingleToInt32Bits), data.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(new NpyHeader(NpyDType.Float32, 3, 4, 128), NumPyFile.ReadHeader(path));
    }

    [Fact]
    public void Float64_file_reads_back_bit_for_bit_and_rounds_to_nearest_float32()
    {
        double[] values = [Math.PI, -1e-300, double.MaxValue / 2, 0.1, -0.0, 1 + 1e-12];
        var path = WriteNpy(Path.Combine(TestSupport.TempDirectory(), "b.npy"), "<f8", "(2, 3)", MemoryMarshal.AsBytes(values.AsSpan()));
        var (exact, rows, columns) = NumPyFile.ReadFloat64Matrix(path);
        Assert.Equal((2, 3), (rows, columns));
        Assert.Equal(values.Select(BitConverter.DoubleToInt64Bits), exact.Select(BitConverter.DoubleToInt64Bits));
        var (narrowed, _, _) = NumPyFile.ReadFloat32Matrix(path);
        Assert.Equal(values.Select(v => (float)v), narrowed);
    }

    [Fact]
    public void Float32_file_widens_exactly_to_float64()
    {
        var values = Float32Samples(6);
        var path = WriteFloat32Npy(Path.Combine(TestSupport.TempDirectory(), "c.npy"), values, 6, 1);
        Assert.Equal(values.Select(v => (double)v), NumPyFile.ReadFloat64Matrix(path).Data);
    }

    [Fact]
    public void Fortran_order_is_refused_with_a_clear_message()
    {
        var path = WriteNpy(Path.Combine(TestSupport.TempDirectory(), "f.npy"), "<f4", "(2, 2)", new byte[16], fortranOrder: true);
        Assert.Contains("Fortran (column-major) order", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(path)).Message);
    }

    [Theory]
    [InlineData("<i4", "dtype '<i4' is not supported")]
    [InlineData("<f2", "dtype '<f2' is not supported")]
    [InlineData(">f4", "big-endian")]
    [InlineData("|b1", "dtype '|b1' is not supported")]
    public void Other_dtypes_are_refused_naming_the_dtype(string descr, string message)
    {
        var path = WriteNpy(Path.Combine(TestSupport.TempDirectory(), "d.npy"), descr, "(2, 2)", new byte[16]);
        Assert.Contains(message, Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(path)).Message);
    }

    [Fact]
    public void Truncated_data_and_trailing_bytes_are_refused()
    {
        var dir = TestSupport.TempDirectory();
        var truncated = WriteNpy(Path.Combine(dir, "t.npy"), "<f4", "(3, 4)", new byte[47]);
        Assert.Contains("truncated file: a [3, 4] '<f4' array needs 48 bytes of data but the file holds 47",
            Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(truncated)).Message);
        var longer = WriteNpy(Path.Combine(dir, "l.npy"), "<f8", "(1, 2)", new byte[17]);
        Assert.Contains("1 unexpected bytes after", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat64Matrix(longer)).Message);

        var cutHeader = Path.Combine(dir, "h.npy");
        File.WriteAllBytes(cutHeader, File.ReadAllBytes(truncated)[..40]);
        Assert.Contains("truncated or corrupt", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(cutHeader)).Message);
    }

    [Theory]
    [InlineData("(2, 3, 4)", "3-dimensional, shape (2, 3, 4)")]
    [InlineData("(6,)", "1-dimensional, shape (6)")]
    [InlineData("()", "0-dimensional")]
    public void Arrays_that_are_not_2d_are_refused_naming_their_shape(string shape, string message)
    {
        var path = WriteNpy(Path.Combine(TestSupport.TempDirectory(), "s.npy"), "<f4", shape, new byte[96]);
        var e = Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(path));
        Assert.Contains(message, e.Message);
        Assert.Contains("2-D", e.Message);
    }

    [Fact]
    public void Files_that_are_not_npy_or_have_a_malformed_header_are_refused()
    {
        var dir = TestSupport.TempDirectory();
        var text = Path.Combine(dir, "x.npy");
        File.WriteAllText(text, "row,col\n1,2\n");
        Assert.Contains("not a .npy file", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(text)).Message);

        var version = WriteNpy(Path.Combine(dir, "v.npy"), "<f4", "(1, 1)", new byte[4]);
        var bytes = File.ReadAllBytes(version);
        bytes[6] = 4;
        File.WriteAllBytes(version, bytes);
        Assert.Contains("version 4.0 is not supported", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(version)).Message);

        var malformed = WriteNpy(Path.Combine(dir, "m.npy"), "<f4", "(1, x)", new byte[4]);
        Assert.Contains("malformed .npy header", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(malformed)).Message);

        Assert.Contains("not found", Assert.Throws<NpyFormatException>(() => NumPyFile.ReadFloat32Matrix(Path.Combine(dir, "absent.npy"))).Message);
    }
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace TauCluster.Engine;

public enum NpyDType { Float32, Float64 }

/// <summary>What a .npy header says: element type and the two dimensions of a C-order matrix, and where the data starts.</summary>
public readonly record struct NpyHeader(NpyDType DType, int Rows, int Columns, long DataOffset)
{
    public int ElementSize => DType == NpyDType.Float32 ? 4 : 8;
    public long DataBytes => (long)Rows * Columns * ElementSize;
}

/// <summary>
/// A strict reader of NumPy's .npy format for what a manifold build needs: a 2-D, C-order (fortran_order False),
/// little-endian float32 ('&lt;f4') or float64 ('&lt;f8') array. Format versions 1.0, 2.0 and 3.0 are read
/// (magic "\x93NUMPY", major and minor version byte, a 2- or 4-byte little-endian header length, then a Python
/// dict literal). Anything else, a file cut short or with bytes after the data, is an <see cref="NpyFormatException"/>
/// that names the problem, rather than a guess at what the bytes mean.
/// </summary>
public static class NumPyFile
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    private const int MaxHeaderBytes = 1 << 20;

    /// <summary>The matrix as float32: float32 files exactly, float64 files rounded to the nearest float.</summary>
    public static (float[] Data, int Rows, int Columns) ReadFloat32Matrix(string path)
    {
        var (header, raw) = ReadRaw(path);
        var data = new float[checked(header.Rows * header.Columns)];
        if (header.DType == NpyDType.Float32) MemoryMarshal.Cast<byte, float>(raw).CopyTo(data);
        else
        {
            var doubles = MemoryMarshal.Cast<byte, double>(raw);
            for (int i = 0; i < data.Length; i++) data[i] = (float)doubles[i];
        }
        return (data, header.Rows, header.Columns);
    }

    /// <summary>The matrix as float64: both dtypes exactly (float32 widens without loss).</summary>
    public static (double[] Data, int Rows, int Columns) ReadFloat64Matrix(string path)
    {
        var (header, raw) = ReadRaw(path);
        var data = new double[checked(header.Rows * header.Columns)];
        if (header.DType == NpyDType.Float64) MemoryMarshal.Cast<byte, double>(raw).CopyTo(data);
        else
        {
            var floats = MemoryMarshal.Cast<byte, float>(raw);
            for (int i = 0; i < data.Length; i++) data[i] = floats[i];
        }
        return (data, header.Rows, header.Columns);
    }

    /// <summary>Reads and checks the header only.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new NpyFormatException($".npy file not found: {path}");
        using var file = File.OpenRead(path);
        return ReadHeader(file, path);
    }

    private static (NpyHeader Header, byte[] Raw) ReadRaw(string path)
    {
        if (!File.Exists(path)) throw new NpyFormatException($".npy file not found: {path}");
        using var file = File.OpenRead(path);
        var header = ReadHeader(file, path);
        long available = file.Length - header.DataOffset;
        if (available < header.DataBytes)
            throw new NpyFormatException($"{path}: truncated file: a [{header.Rows}, {header.Columns}] {Descr(header.DType)} array needs {header.DataBytes} bytes of data but the file holds {available}");
        if (available > header.DataBytes)
            throw new NpyFormatException($"{path}: {available - header.DataBytes} unexpected bytes after the [{header.Rows}, {header.Columns}] array's data");
        if (header.DataBytes > Array.MaxLength)
            throw new NpyFormatException($"{path}: the array is too large to load ({header.DataBytes} bytes)");
        var raw = new byte[header.DataBytes];
        file.Position = header.DataOffset;
        file.ReadExactly(raw);
        return (header, raw);
    }

    private static NpyHeader ReadHeader(Stream file, string path)
    {
        Span<byte> prefix = stackalloc byte[12];
        int got = file.ReadAtLeast(prefix[..10], 10, throwOnEndOfStream: false);
        if (got < 10 || !prefix[..6].SequenceEqual(Magic))
            throw new NpyFormatException($"{path}: not a .npy file (no \\x93NUMPY magic at the start)");
        byte major = prefix[6], minor = prefix[7];
        if (major is not (1 or 2 or 3) || minor != 0)
            throw new NpyFormatException($"{path}: .npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)");

        long headerLength;
        int lengthEnd;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..10]);
            lengthEnd = 10;
        }
        else
        {
            if (file.ReadAtLeast(prefix[10..12], 2, throwOnEndOfStream: false) < 2)
                throw new NpyFormatException($"{path}: truncated file (no header length)");
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..12]);
            lengthEnd = 12;
        }
        if (headerLength > MaxHeaderBytes || lengthEnd + headerLength > file.Length)
            throw new NpyFormatException($"{path}: truncated or corrupt file (header of {headerLength} bytes, file of {file.Length})");

        var headerBytes = new byte[headerLength];
        file.ReadExactly(headerBytes);
        string text;
        try
        {
            // Versions 1 and 2 promise latin-1 (in practice ASCII); version 3 allows UTF-8.
            text = major == 3 ? new UTF8Encoding(false, true).GetString(headerBytes) : Encoding.Latin1.GetString(headerBytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new NpyFormatException($"{path}: the header is not valid UTF-8", e);
        }

        var fields = HeaderParser.Parse(text, path);
        string descr = fields.Descr;
        var dtype = descr switch
        {
            "<f4" => NpyDType.Float32,
            "<f8" => NpyDType.Float64,
            ">f4" or ">f8" => throw new NpyFormatException($"{path}: dtype '{descr}' is big-endian; save it as little-endian ('<f4' or '<f8')"),
            _ => throw new NpyFormatException($"{path}: dtype '{descr}' is not supported (float32 '<f4' and float64 '<f8' are)"),
        };
        if (fields.FortranOrder)
            throw new NpyFormatException($"{path}: the array is in Fortran (column-major) order; save it C-ordered (numpy.ascontiguousarray)");
        if (fields.Shape.Length != 2)
            throw new NpyFormatException($"{path}: the array is {fields.Shape.Length}-dimensional, shape ({string.Join(", ", fields.Shape)}); a 2-D [items, features] matrix is needed");
        if (fields.Shape[0] > int.MaxValue || fields.Shape[1] > int.MaxValue)
            throw new NpyFormatException($"{path}: shape ({fields.Shape[0]}, {fields.Shape[1]}) is too large");
        return new NpyHeader(dtype, (int)fields.Shape[0], (int)fields.Shape[1], lengthEnd + headerLength);
    }

    private static string Descr(NpyDType dtype) => dtype == NpyDType.Float32 ? "'<f4'" : "'<f8'";

    /// <summary>
    /// The header is a Python dict literal with exactly the keys 'descr' (a string), 'fortran_order' (True or False)
    /// and 'shape' (a tuple of non-negative integers), padded with spaces and ended by a newline.
    /// </summary>
    private sealed class HeaderParser(string text, string path)
    {
        private int position;

        public static (string Descr, bool FortranOrder, long[] Shape) Parse(string text, string path)
        {
            var parser = new HeaderParser(text, path);
            string? descr = null; bool? fortran = null; long[]? shape = null;
            parser.Expect('{');
            while (!parser.TryTake('}'))
            {
                string key = parser.QuotedString();
                parser.Expect(':');
                switch (key)
                {
                    case "descr" when descr is null: descr = parser.QuotedString(); break;
                    case "fortran_order" when fortran is null: fortran = parser.Boolean(); break;
                    case "shape" when shape is null: shape = parser.IntegerTuple(); break;
                    case "descr" or "fortran_order" or "shape": throw parser.Error($"key '{key}' appears twice");
                    default: throw parser.Error($"unexpected key '{key}'");
                }
                if (!parser.TryTake(',')) { parser.Expect('}'); break; }
            }
            parser.SkipSpace();
            if (parser.position != text.Length) throw parser.Error("text after the closing brace");
            return (descr ?? throw parser.Error("no 'descr'"), fortran ?? throw parser.Error("no 'fortran_order'"), shape ?? throw parser.Error("no 'shape'"));
        }

        private NpyFormatException Error(string what) => new($"{path}: malformed .npy header ({what}): {text.TrimEnd()}");

        public void SkipSpace()
        {
            while (position < text.Length && char.IsWhiteSpace(text[position])) position++;
        }

        public bool TryTake(char c)
        {
            SkipSpace();
            if (position < text.Length && text[position] == c) { position++; return true; }
            return false;
        }

        public void Expect(char c)
        {
            if (!TryTake(c)) throw Error($"expected '{c}' at offset {position}");
        }

        public string QuotedString()
        {
            SkipSpace();
            if (position >= text.Length || text[position] is not ('\'' or '"')) throw Error($"expected a quoted string at offset {position}");
            char quote = text[position++];
            int end = text.IndexOf(quote, position);
            if (end < 0) throw Error("unterminated string");
            string value = text[position..end];
            position = end + 1;
            return value;
        }

        public bool Boolean()
        {
            SkipSpace();
            foreach (var (word, value) in new[] { ("True", true), ("False", false) })
                if (string.CompareOrdinal(text, position, word, 0, word.Length) == 0) { position += word.Length; return value; }
            throw Error($"expected True or False at offset {position}");
        }

        public long[] IntegerTuple()
        {
            Expect('(');
            var dims = new List<long>();
            while (!TryTake(')'))
            {
                SkipSpace();
                int start = position;
                while (position < text.Length && char.IsAsciiDigit(text[position])) position++;
                if (position == start || !long.TryParse(text.AsSpan(start, position - start), out long d))
                    throw Error($"expected a dimension at offset {start}");
                dims.Add(d);
                if (!TryTake(',')) { Expect(')'); break; }
            }
            return dims.ToArray();
        }
    }
}

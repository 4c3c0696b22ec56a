using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TauCluster.Engine;

/// <summary>One tensor: its name, shape and data, widened to F32 from <paramref name="DType"/>, the type it was stored in.</summary>
public sealed record Tensor(string Name, int[] Shape, float[] Data, TensorDType DType = TensorDType.F32);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header
/// (name → dtype, shape, data_offsets) and the raw row-major data. F16 and BF16 are widened to F32 on load.
/// </summary>
public static class SafeTensors
{
    private const long MaxHeaderBytes = 100 * 1024 * 1024;

    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"safetensors file not found: {path}");
        using var file = File.OpenRead(path);
        long fileLength = file.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (file.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
            throw new ModelFormatException($"{path}: truncated safetensors file (no header length)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)Math.Min(MaxHeaderBytes, fileLength - 8))
            throw new ModelFormatException($"{path}: truncated or corrupt safetensors file (header of {headerLength} bytes, file of {fileLength})");
        var headerBytes = new byte[headerLength];
        file.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonObject header;
        try
        {
            header = JsonNode.Parse(headerBytes) as JsonObject ?? throw new ModelFormatException($"{path}: safetensors header is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: safetensors header is not valid JSON ({e.Message})", e);
        }

        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            if (node is not JsonObject entry) throw new ModelFormatException($"{path}: tensor {name} has no header object");
            try
            {
                tensors.Add(name, ReadTensor(file, path, name, entry, dataStart, dataLength));
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
            {
                throw new ModelFormatException($"{path}: tensor {name} has a malformed header entry ({e.Message})", e);
            }
        }
        return tensors;
    }

    private static Tensor ReadTensor(FileStream file, string path, string name, JsonObject entry, long dataStart, long dataLength)
    {
        var dtypeText = entry["dtype"]?.GetValue<string>() ?? throw new ModelFormatException($"{path}: tensor {name} has no dtype");
        var dtype = dtypeText switch
        {
            "F32" => TensorDType.F32,
            "F16" => TensorDType.F16,
            "BF16" => TensorDType.BF16,
            _ => throw new ModelFormatException($"{path}: tensor {name} has unsupported dtype {dtypeText} (F32, F16 and BF16 are accepted)"),
        };
        int[] shape = ReadShape(path, name, entry);
        if (entry["data_offsets"] is not JsonArray { Count: 2 } offsets)
            throw new ModelFormatException($"{path}: tensor {name} has no data_offsets [begin, end]");
        long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
        long elements = shape.Aggregate(1L, (a, b) => a * b);
        long expectedBytes = elements * dtype.ElementSize();
        if (begin < 0 || end < begin || end - begin != expectedBytes)
            throw new ModelFormatException($"{path}: tensor {name} data_offsets [{begin}, {end}] do not hold {elements} {dtypeText} values");
        if (end > dataLength)
            throw new ModelFormatException($"{path}: truncated file: tensor {name} ends at byte {end} of data but the file holds {dataLength}");
        if (elements > Array.MaxLength) throw new ModelFormatException($"{path}: tensor {name} is too large ({elements} elements)");

        var raw = new byte[expectedBytes];
        file.Position = dataStart + begin;
        file.ReadExactly(raw);
        return new Tensor(name, shape, Widen(raw, dtype, (int)elements), dtype);
    }

    private static int[] ReadShape(string path, string name, JsonObject entry)
    {
        if (entry["shape"] is not JsonArray dims) throw new ModelFormatException($"{path}: tensor {name} has no shape");
        var shape = new int[dims.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            if (dims[i] is not JsonValue v || !v.TryGetValue<long>(out var d) || d < 0 || d > int.MaxValue)
                throw new ModelFormatException($"{path}: tensor {name} has an invalid shape {dims.ToJsonString()}");
            shape[i] = (int)d;
        }
        return shape;
    }

    private static float[] Widen(byte[] raw, TensorDType dtype, int count)
    {
        var result = new float[count];
        switch (dtype)
        {
            case TensorDType.F32:
                MemoryMarshal.Cast<byte, float>(raw).CopyTo(result);
                break;
            default:
                var bits = MemoryMarshal.Cast<byte, ushort>(raw);
                for (int i = 0; i < count; i++) result[i] = dtype.Widen(bits[i]);
                break;
        }
        return result;
    }

    /// <summary>Writes tensors in the given order, each in the given dtype (its own when absent), rounded to nearest.</summary>
    public static void Write(string path, IEnumerable<Tensor> tensors, Func<string, TensorDType>? dtypeOf = null)
    {
        var list = tensors.ToList();
        var header = new JsonObject();
        long offset = 0;
        foreach (var t in list)
        {
            var dtype = dtypeOf?.Invoke(t.Name) ?? t.DType;
            long bytes = t.Data.LongLength * dtype.ElementSize();
            header[t.Name] = new JsonObject
            {
                ["dtype"] = dtype.ToString(),
                ["shape"] = new JsonArray(t.Shape.Select(d => JsonValue.Create((long)d)).ToArray<JsonNode?>()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) / 8 * 8;   // the format aligns the data to 8 bytes with spaces
        var headerPadded = new byte[padded];
        headerPadded.AsSpan().Fill((byte)' ');
        headerBytes.CopyTo(headerPadded, 0);

        using var file = File.Create(path);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        file.Write(prefix);
        file.Write(headerPadded);
        foreach (var t in list)
        {
            switch (dtypeOf?.Invoke(t.Name) ?? t.DType)
            {
                case TensorDType.F32:
                    file.Write(MemoryMarshal.AsBytes(t.Data.AsSpan()));
                    break;
                case var narrow:
                    var bits = new ushort[t.Data.Length];
                    for (int i = 0; i < bits.Length; i++) bits[i] = narrow.Narrow(t.Data[i]);
                    file.Write(MemoryMarshal.AsBytes(bits.AsSpan()));
                    break;
            }
        }
    }
}

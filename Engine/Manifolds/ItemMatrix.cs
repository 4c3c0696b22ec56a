namespace TauCluster.Engine;

/// <summary>A row-major [Rows, Columns] float matrix of items (rows) over features (columns), and where it came from.</summary>
public sealed class ItemMatrix
{
    public ItemMatrix(float[] data, int rows, int columns, string source)
    {
        if (rows < 0 || columns < 0 || data.LongLength != (long)rows * columns)
            throw new ManifoldBuildException($"{source}: {data.LongLength} values do not make a [{rows}, {columns}] matrix");
        (Data, Rows, Columns, Source) = (data, rows, columns, source);
    }

    public float[] Data { get; }
    public int Rows { get; }
    public int Columns { get; }
    public string Source { get; }

    public ReadOnlySpan<float> Row(int index) => Data.AsSpan(index * Columns, Columns);
}

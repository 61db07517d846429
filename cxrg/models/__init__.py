"""Built-in models; registered through cxrg's own entry points exactly as a third party's would be."""

"""Reports: find or run the needed experiments, make figures and tables, render the PDF."""
